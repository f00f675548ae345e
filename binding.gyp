{
  "targets": [
    {
      "target_name": "hetmm_native",
      "sources": ["native/hetmm_native.c", "native/pixel_norm.c"],
      "cflags": ["-O3", "-fno-strict-aliasing", "-Wall", "-Wno-psabi", "-Wno-unused-function"],
      "cflags_c": ["-std=gnu11"],
      "libraries": ["-lpthread"],
      "conditions": [
        ["OS=='mac'", {
          "xcode_settings": { "GCC_OPTIMIZATION_LEVEL": "3", "OTHER_CFLAGS": ["-std=gnu11"] }
        }]
      ]
    }
  ]
}
