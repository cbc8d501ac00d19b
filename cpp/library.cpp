// The learnable_ops library: the namespace definition and build_info().
// Each family declares its schemas in a TORCH_LIBRARY_FRAGMENT beside its CPU
// kernels (cpp/<family>.cpp); tensors never pass through pybind11.
#include <ATen/Config.h>
#include <ATen/Parallel.h>
#include <pybind11/pybind11.h>
#include <torch/library.h>

TORCH_LIBRARY(learnable_ops, m) {}

namespace {

pybind11::dict build_info() {
  pybind11::dict info;
  info["torch_version"] = LEARNABLE_OPS_TORCH_VERSION;
#ifdef LEARNABLE_OPS_WITH_CUDA
  info["cuda"] = true;
  info["cuda_architectures"] = LEARNABLE_OPS_CUDA_ARCHS;
  info["cuda_compiler"] = LEARNABLE_OPS_CUDA_COMPILER;
#else
  info["cuda"] = false;
  info["cuda_architectures"] = "";
  info["cuda_compiler"] = "";
#endif
  // Whether our CPU kernels run in parallel: at::parallel_for needs -fopenmp here.
#ifdef _OPENMP
  info["openmp"] = true;
#else
  info["openmp"] = false;
#endif
  info["compiler"] = LEARNABLE_OPS_COMPILER;
  info["cxx11_abi"] = static_cast<bool>(_GLIBCXX_USE_CXX11_ABI);
  return info;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "learnable_ops native extension: registers the learnable_ops::* dispatcher ops";
  m.def("build_info", &build_info,
        "How this extension was built: torch version, CUDA, architectures, OpenMP, compiler");
}
