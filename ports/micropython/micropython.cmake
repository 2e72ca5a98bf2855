# USER_C_MODULES for CMake-based MicroPython ports: every module of this folder.
include(${CMAKE_CURRENT_LIST_DIR}/mqb/micropython.cmake)
