# The layering rules of the tree, checked by every build (CMake target check_layers,
# part of ALL): an #include "…" that points the wrong way fails the build with the file,
# the line and the rule. docs/ARCHITECTURE.md draws the layers.
#   cmake -DROOT=<source dir> -P scripts/check_layers.cmake
#
# Each rule: <folder prefix of the including file>|<forbidden include prefixes, comma-separated>|<why>
cmake_policy(SET CMP0057 NEW)
set(RULES
  "kernels/|engine/,server/,tools/|kernels hold CUDA ops only: no sessions, no engine types"
  "engine/|server/,tools/,proto/|the engine has no networking and no CLI"
  "engine/checkpoint/|engine/cpu/,engine/cuda/,engine/tokenizer/,engine/sampling/,engine/model|checkpoint readers only read files into tensors"
  "engine/tokenizer/|engine/cpu/,engine/cuda/,engine/checkpoint/,engine/sampling/,engine/model,engine/backend|the tokenizer stands alone"
  "engine/cpu/|kernels/,engine/cuda/|the CPU reference knows nothing of CUDA"
  "engine/sampling/|kernels/,engine/cuda/,engine/cpu/|the sampler works on any backend's logits"
  "engine/sampling/grammar/|engine/sampling/sampler,engine/model,engine/backend,engine/session_state,engine/checkpoint/|grammars need only the tokenizer"
  "server/|tools/|the server library never depends on the CLI"
  "server/http/|server/scheduling/,server/sessions/,server/prefix_cache/,server/app/,server/grpc/|frontends talk to Service only"
  "server/grpc/|server/scheduling/,server/sessions/,server/prefix_cache/,server/app/,server/http/,server/openai/|frontends talk to Service only"
  "server/openai/|server/scheduling/,server/sessions/,server/prefix_cache/,server/app/,server/http/,server/grpc/|wire formats talk to Service only"
  "server/service/|server/http/,server/grpc/,server/openai/,server/app/|the service knows no wire format"
  "server/scheduling/|server/service/,server/http/,server/grpc/,server/openai/,server/app/|the scheduler knows no frontend"
  "server/sessions/|server/service/,server/http/,server/grpc/,server/openai/,server/app/,server/scheduling/|the session store sits below the scheduler"
  "server/prefix_cache/|server/service/,server/http/,server/grpc/,server/openai/,server/app/,server/scheduling/,server/sessions/|the prefix cache sits below the scheduler"
  "server/metrics/|server/service/,server/http/,server/grpc/,server/openai/,server/app/,server/scheduling/,server/sessions/,server/prefix_cache/|metrics are a leaf"
)
# Files directly in server/ (request stream, errors, log, API keys) are shared by all
# layers and include none of the server's folders but metrics/.
set(COMMON_FORBIDDEN server/service/ server/http/ server/grpc/ server/openai/ server/app/
    server/scheduling/ server/sessions/ server/prefix_cache/)

if(NOT ROOT)
  message(FATAL_ERROR "check_layers: pass -DROOT=<source dir>")
endif()
file(GLOB_RECURSE FILES RELATIVE ${ROOT}
  ${ROOT}/engine/*.h ${ROOT}/engine/*.cc ${ROOT}/engine/*.cu ${ROOT}/engine/*.cuh
  ${ROOT}/kernels/*.h ${ROOT}/kernels/*.cu ${ROOT}/kernels/*.cuh
  ${ROOT}/server/*.h ${ROOT}/server/*.cc)
set(BAD 0)
foreach(f ${FILES})
  file(STRINGS ${ROOT}/${f} LINES REGEX "^[ \t]*#[ \t]*include[ \t]+\"")
  set(lineno 0)
  foreach(line ${LINES})
    string(REGEX REPLACE "^[ \t]*#[ \t]*include[ \t]+\"([^\"]+)\".*" "\\1" inc "${line}")
    foreach(rule ${RULES} "COMMON")
      if(rule STREQUAL "COMMON")
        string(REGEX MATCH "^server/[^/]+$" top "${f}")
        if(NOT top)
          continue()
        endif()
        set(forbidden ${COMMON_FORBIDDEN})
        set(why "server/'s shared files sit below every layer")
      else()
        string(REPLACE "|" ";" parts "${rule}")
        list(GET parts 0 prefix)
        list(GET parts 1 forb)
        list(GET parts 2 why)
        string(FIND "${f}" "${prefix}" at)
        if(NOT at EQUAL 0)
          continue()
        endif()
        string(REPLACE "," ";" forbidden "${forb}")
      endif()
      foreach(fp ${forbidden})
        string(FIND "${inc}" "${fp}" hit)
        if(hit EQUAL 0)
          message(SEND_ERROR "check_layers: ${f} includes \"${inc}\": ${why}")
          set(BAD 1)
        endif()
      endforeach()
    endforeach()
  endforeach()
endforeach()
if(BAD)
  message(FATAL_ERROR "check_layers: includes point the wrong way (docs/ARCHITECTURE.md)")
endif()
