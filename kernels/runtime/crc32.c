/* edgetrain — placeholder, implementation pending. */
typedef int et_placeholder_crc32;
