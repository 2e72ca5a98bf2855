# The mqb module for CMake-based MicroPython ports (esp32, rp2):
#   make -C ports/esp32 USER_C_MODULES=/path/to/mqboard/ports/micropython/micropython.cmake
add_library(usermod_mqb INTERFACE)
get_filename_component(MQB_ROOT ${CMAKE_CURRENT_LIST_DIR}/../../.. ABSOLUTE)
target_sources(usermod_mqb INTERFACE
  ${CMAKE_CURRENT_LIST_DIR}/modmqb.c ${CMAKE_CURRENT_LIST_DIR}/trust.c
  ${CMAKE_CURRENT_LIST_DIR}/ticker.c
  ${MQB_ROOT}/core/err.c ${MQB_ROOT}/core/strbuf.c ${MQB_ROOT}/core/wire.c
  ${MQB_ROOT}/core/engine.c ${MQB_ROOT}/core/wdt.c ${MQB_ROOT}/core/boot.c ${MQB_ROOT}/core/auth.c)
target_include_directories(usermod_mqb INTERFACE ${MQB_ROOT}/include)
target_compile_definitions(usermod_mqb INTERFACE MQB_CHUNK_MAX=4096 MQB_MAX_XFERS=2
  MQB_PATH_MAX=256 MQB_WINDOW=4 MQB_AUTH_KEYS_MAX=4 MQB_AUTH_WINDOW=8 MQB_AUTH_CHAINS=2)
target_link_libraries(usermod INTERFACE usermod_mqb)
