# Makes sure the extension uses the shared libstdc++ that torch itself runs on.
#
# Some toolchains link libstdc++ statically into shared modules: a wrapper compiler
# whose private -B directory holds libstdc++.a but no libstdc++.so does (the GPU
# machine's CXX=/opt/gcc/bin/g++ is one). The extension then carries a second copy
# of libstdc++ beside the one torch loaded, the two disagree about std::locale state,
# and the first c10::Error whose message formats an integer (every shape check)
# segfaults instead of raising. torch.utils.cpp_extension builds crash the same way
# with such a compiler.
#
# We link a probe the way the extension is linked and read the linker's trace. If it
# resolves libstdc++.a, we put the libstdc++.so.6 that torch loaded on the link line
# first, so that no archive member is needed, and keep any member that still is
# local to the module (--exclude-libs). Sets LEARNABLE_OPS_STDLIB_LINK (may be empty).
set(LEARNABLE_OPS_STDLIB_LINK "")
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_SYSTEM_NAME STREQUAL "Linux")
  set(_probe "${CMAKE_CURRENT_BINARY_DIR}/stdlib_probe")
  file(MAKE_DIRECTORY "${_probe}")
  file(WRITE "${_probe}/probe.cpp"
    "#include <sstream>\n#include <string>\n"
    "std::string probe(long x) { std::ostringstream s; s << x; return s.str(); }\n")
  execute_process(
    COMMAND "${CMAKE_CXX_COMPILER}" -shared -fPIC "${_probe}/probe.cpp" -o "${_probe}/probe.so"
            -Wl,--trace
    OUTPUT_VARIABLE _trace ERROR_VARIABLE _trace_err RESULT_VARIABLE _rc)
  if(_rc EQUAL 0 AND "${_trace}${_trace_err}" MATCHES "libstdc\\+\\+\\.a")
    learnable_ops_torch_runtime_library(_runtime libstdc++)
    if(NOT _runtime)
      message(FATAL_ERROR "learnable_ops: ${CMAKE_CXX_COMPILER} links libstdc++ statically, "
        "which crashes torch when a kernel raises, and the libstdc++.so that torch loads "
        "was not found. Build with another compiler, e.g. CXX=/usr/bin/g++.")
    endif()
    set(LEARNABLE_OPS_STDLIB_LINK "${_runtime}" "-Wl,--exclude-libs,libstdc++.a")
    message(STATUS "learnable_ops: ${CMAKE_CXX_COMPILER} links libstdc++ statically; "
                   "linking torch's ${_runtime} instead")
  endif()
endif()
