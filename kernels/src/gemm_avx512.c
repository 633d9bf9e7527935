/* edgetrain — placeholder, implementation pending. */
typedef int et_placeholder_gemm_avx512;
