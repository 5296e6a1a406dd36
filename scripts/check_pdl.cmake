# The rule that lets kernels read, before their PDL wait, what the kernel right before them
# does not write (kernels/launch.cuh): no kernel lets the next one be scheduled before its
# own wait has returned, so that a kernel starts only once the one two launches back has
# completed. Checked by every build (CMake target check_layers): each PdlTrigger() call in
# kernels/ must follow a PdlWait() call on the line before it (comments aside).
#   cmake -DROOT=<source dir> -P scripts/check_pdl.cmake
if(NOT ROOT)
  message(FATAL_ERROR "check_pdl: pass -DROOT=<source dir>")
endif()
file(GLOB FILES RELATIVE ${ROOT} ${ROOT}/kernels/*.cu ${ROOT}/kernels/*.cuh)
set(BAD 0)
foreach(f ${FILES})
  file(STRINGS ${ROOT}/${f} LINES)
  set(prev "")
  set(lineno 0)
  foreach(line IN LISTS LINES)
    math(EXPR lineno "${lineno} + 1")
    string(REGEX REPLACE "//.*$" "" code "${line}")
    string(STRIP "${code}" code)
    if(code STREQUAL "")
      continue()
    endif()
    if(code MATCHES "(^|[^A-Za-z0-9_])PdlTrigger\\(\\);" AND NOT f STREQUAL "kernels/launch.cuh")
      if(NOT prev MATCHES "(^|[^A-Za-z0-9_])PdlWait\\(\\);")
        message(SEND_ERROR "check_pdl: ${f}:${lineno}: PdlTrigger() must come right after PdlWait() (kernels/launch.cuh)")
        set(BAD 1)
      endif()
    endif()
    set(prev "${code}")
  endforeach()
endforeach()
if(BAD)
  message(FATAL_ERROR "check_pdl: a kernel lets the next one start before its own wait")
endif()
