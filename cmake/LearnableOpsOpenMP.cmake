# OpenMP for the CPU kernels, on the runtime torch itself uses.
#
# at::parallel_for is an inline OpenMP region in torch's headers (ParallelOpenMP.h):
# compiled without -fopenmp it is a serial loop. When torch uses OpenMP we compile
# with -fopenmp and link the OpenMP library torch loaded (libgomp.so.1 in the wheels),
# not whichever one the compiler would pick: one runtime in the process, so
# torch.set_num_threads governs our kernels too, and no static copy from a
# toolchain that only ships libgomp.a. Sets LEARNABLE_OPS_OPENMP (ON/OFF) and
# LEARNABLE_OPS_OPENMP_LINK.
set(LEARNABLE_OPS_OPENMP OFF)
set(LEARNABLE_OPS_OPENMP_LINK "")
if(LEARNABLE_OPS_TORCH_OPENMP AND CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
  learnable_ops_torch_runtime_library(_omp_runtime libgomp libiomp libomp)
  if(_omp_runtime)
    set(LEARNABLE_OPS_OPENMP_LINK "${_omp_runtime}")
  else()
    find_package(OpenMP REQUIRED COMPONENTS CXX)
    set(LEARNABLE_OPS_OPENMP_LINK OpenMP::OpenMP_CXX)
    set(_omp_runtime "${OpenMP_CXX_LIBRARIES}")
  endif()
  set(LEARNABLE_OPS_OPENMP ON)
  message(STATUS "learnable_ops: OpenMP on, runtime ${_omp_runtime}")
endif()
