# Turns the MicroPython-compatibility modules (*.py in this folder) into a C source that
# mqrepld links in, so the agent is one file with no Python tree to install beside it.
# Usage: cmake -DOUT=file.c -DSRC=dir -P embed.cmake
file(GLOB modules "${SRC}/*.py")
list(SORT modules)
set(body "// Generated from ports/linux/mpcompat/*.py by embed.cmake: do not edit.\n#include <stddef.h>\n\n")
set(table "")
foreach(path ${modules})
  get_filename_component(name "${path}" NAME_WE)
  file(READ "${path}" hex HEX)
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," hex "${hex}")
  string(APPEND body "static const char src_${name}[] = {${hex}0};\n")
  string(APPEND table "    {\"${name}\", src_${name}},\n")
endforeach()
string(APPEND body "\nconst struct { const char *name; const char *src; } mpcompat_modules[] = {\n${table}    {NULL, NULL},\n};\n")
file(WRITE "${OUT}.tmp" "${body}")
file(COPY_FILE "${OUT}.tmp" "${OUT}" ONLY_IF_DIFFERENT)
