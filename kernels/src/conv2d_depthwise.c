/* edgetrain — placeholder, implementation pending. */
typedef int et_placeholder_conv2d_depthwise;
