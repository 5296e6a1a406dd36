#include <atomic>

#include "kernels/launch.cuh"

namespace rwkvx::kernels {
namespace {
std::atomic<bool> g_pdl{false};
}  // namespace

void SetPdl(bool on) { g_pdl.store(on, std::memory_order_relaxed); }
bool PdlOn() { return g_pdl.load(std::memory_order_relaxed); }

}  // namespace rwkvx::kernels
