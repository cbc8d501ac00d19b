# Locates the installed torch through the Python interpreter, so that we always
# build against the torch that will import us, and decides whether CUDA is on.
execute_process(
  COMMAND "${Python_EXECUTABLE}" -c
    "import torch; print(torch.utils.cmake_prefix_path); print(torch.__version__); print(int(torch.backends.openmp.is_available())); print(torch.version.cuda or '')"
  OUTPUT_VARIABLE _torch_info OUTPUT_STRIP_TRAILING_WHITESPACE
  RESULT_VARIABLE _torch_rc)
if(NOT _torch_rc EQUAL 0)
  message(FATAL_ERROR "learnable_ops: cannot import torch with ${Python_EXECUTABLE}. "
    "Install torch first, then build with `pip install --no-build-isolation .`")
endif()
string(REPLACE "\n" ";" _torch_info "${_torch_info}")
list(GET _torch_info 0 _torch_prefix)
list(GET _torch_info 1 LEARNABLE_OPS_TORCH_VERSION)
list(LENGTH _torch_info _n)
list(GET _torch_info 2 LEARNABLE_OPS_TORCH_OPENMP)
set(_torch_cuda "")
if(_n GREATER 3)  # a CPU-only torch prints an empty CUDA version, stripped above
  list(GET _torch_info 3 _torch_cuda)
endif()
list(APPEND CMAKE_PREFIX_PATH "${_torch_prefix}")

# Compile with the C++ standard torch itself was built with (C++20 from torch
# 2.12 on, C++17 before): mixing standards across torch's inline code is an
# ODR hazard.
string(REGEX MATCH "^([0-9]+)\\.([0-9]+)" _ "${LEARNABLE_OPS_TORCH_VERSION}")
if(CMAKE_MATCH_1 GREATER 2 OR (CMAKE_MATCH_1 EQUAL 2 AND CMAKE_MATCH_2 GREATER_EQUAL 12))
  set(LEARNABLE_OPS_CXX_STANDARD 20)
else()
  set(LEARNABLE_OPS_CXX_STANDARD 17)
endif()
set(CMAKE_CXX_STANDARD ${LEARNABLE_OPS_CXX_STANDARD})
set(CMAKE_CXX_STANDARD_REQUIRED ON)

set(LEARNABLE_OPS_CUDA OFF)
set(LEARNABLE_OPS_CUDA_ARCHS "")
if(NOT LEARNABLE_OPS_WITH_CUDA STREQUAL "OFF")
  include(CheckLanguage)
  check_language(CUDA)
  if(_torch_cuda AND CMAKE_CUDA_COMPILER)
    set(LEARNABLE_OPS_CUDA ON)
  elseif(LEARNABLE_OPS_WITH_CUDA STREQUAL "ON")
    message(FATAL_ERROR "learnable_ops: LEARNABLE_OPS_WITH_CUDA=ON but "
      "torch CUDA='${_torch_cuda}' and nvcc='${CMAKE_CUDA_COMPILER}'")
  endif()
endif()

if(LEARNABLE_OPS_CUDA)
  # TORCH_CUDA_ARCH_LIST ("8.0;9.0", "9.0+PTX") -> CMake architectures ("80-real;90").
  set(_arch_list "$ENV{TORCH_CUDA_ARCH_LIST}")
  if(_arch_list STREQUAL "")
    set(_arch_list "8.0;9.0")
  endif()
  string(REPLACE " " ";" _arch_list "${_arch_list}")
  foreach(_arch IN LISTS _arch_list)
    if(_arch STREQUAL "")
      continue()
    endif()
    string(FIND "${_arch}" "+PTX" _ptx)
    string(REPLACE "+PTX" "" _arch "${_arch}")
    string(REPLACE "." "" _arch "${_arch}")
    if(_ptx EQUAL -1)
      list(APPEND LEARNABLE_OPS_CUDA_ARCHS "${_arch}-real")
    else()
      list(APPEND LEARNABLE_OPS_CUDA_ARCHS "${_arch}")
    endif()
  endforeach()
  set(CMAKE_CUDA_ARCHITECTURES ${LEARNABLE_OPS_CUDA_ARCHS})
  enable_language(CUDA)
  set(CMAKE_CUDA_STANDARD ${LEARNABLE_OPS_CXX_STANDARD})
  # Torch's CMake config adds its own -gencode flags unless told the list is set.
  set(TORCH_CUDA_ARCH_LIST "$ENV{TORCH_CUDA_ARCH_LIST}")
endif()

find_package(Torch REQUIRED)
if(LEARNABLE_OPS_CUDA)
  # Keep only our per-target architectures: drop the -gencode flags torch injects.
  string(REGEX REPLACE "-gencode[= ]arch=compute_[0-9a-z]+,code=[a-z_0-9\\[\\],]+" ""
         CMAKE_CUDA_FLAGS "${CMAKE_CUDA_FLAGS}")
endif()
message(STATUS "learnable_ops: torch ${LEARNABLE_OPS_TORCH_VERSION}, C++${LEARNABLE_OPS_CXX_STANDARD}, CUDA kernels: ${LEARNABLE_OPS_CUDA} ${LEARNABLE_OPS_CUDA_ARCHS}")

# learnable_ops_torch_runtime_library(<out-var> <name-prefix>...): the path of the first shared
# library mapped into a Python process after `import torch` whose file name starts with one of
# the prefixes (e.g. libstdc++, libgomp), or "" if none (or not on Linux). Used to link the
# runtimes torch itself loaded instead of the ones the compiler would pick.
function(learnable_ops_torch_runtime_library out_var)
  string(REPLACE ";" "', '" _prefixes "${ARGN}")
  execute_process(
    COMMAND "${Python_EXECUTABLE}" -c
      "import torch\nfor line in open('/proc/self/maps'):\n    p = line.split()[-1]\n    name = p.rsplit('/', 1)[-1]\n    if name.startswith(('${_prefixes}',)) and '.so' in name:\n        print(p); break"
    OUTPUT_VARIABLE _path OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  if(NOT EXISTS "${_path}")
    set(_path "")
  endif()
  set(${out_var} "${_path}" PARENT_SCOPE)
endfunction()
