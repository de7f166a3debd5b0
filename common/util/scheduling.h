// Scheduler hints for the process's threads. The control loop (health endpoint, checks,
// signals) must answer a load balancer's probe within a millisecond while the DNS workers
// keep every CPU busy; with the EEVDF scheduler (Linux 6.6+) a woken thread waits for the
// running one's time slice (about 3 ms here) unless its own requested slice is shorter
// ("PREEMPT_SHORT", Linux 6.12+). Any thread; each call affects the calling thread only.
#pragma once

#include <cstdint>
#include <string>

namespace hubdns {

// Moves the calling thread to SCHED_FIFO at `priority` (1 = the lowest real-time level),
// with SCHED_RESET_ON_FORK so threads it creates later run at normal priority. Needs root,
// CAP_SYS_NICE or an RLIMIT_RTPRIO of at least `priority`; returns false (and *error)
// otherwise.
bool request_realtime_priority(int priority, std::string* error);

// Asks the kernel for a time slice of `microseconds` for the calling thread (policy stays
// SCHED_OTHER, nice unchanged: no privilege needed, no starvation of others possible).
// Kernels without custom slices accept and ignore it. Returns false (and *error) only if
// the kernel refused the call.
bool request_short_time_slice(uint64_t microseconds, std::string* error);

}  // namespace hubdns
