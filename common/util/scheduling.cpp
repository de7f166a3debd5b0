#include "common/util/scheduling.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace hubdns {

namespace {

// struct sched_attr of sched_setattr(2); glibc 2.36 has no wrapper nor the type.
struct SchedAttr {
  uint32_t size;
  uint32_t sched_policy;
  uint64_t sched_flags;
  int32_t sched_nice;
  uint32_t sched_priority;
  uint64_t sched_runtime;  // SCHED_OTHER: the requested slice, in ns (Linux 6.12+)
  uint64_t sched_deadline;
  uint64_t sched_period;
  uint32_t sched_util_min;
  uint32_t sched_util_max;
};

}  // namespace

bool request_realtime_priority(int priority, std::string* error) {
  constexpr uint32_t kSchedFifo = 1;
  constexpr uint64_t kResetOnFork = 0x01;  // SCHED_FLAG_RESET_ON_FORK
  SchedAttr attr{};
  attr.size = sizeof attr;
  attr.sched_policy = kSchedFifo;
  attr.sched_flags = kResetOnFork;
  attr.sched_priority = static_cast<uint32_t>(priority);
  if (syscall(SYS_sched_setattr, 0, &attr, 0) != 0) {
    const int failure = errno;
    *error = std::strerror(failure);
    // Without CAP_SYS_NICE the kernel allows up to RLIMIT_RTPRIO: name it, so a unit whose
    // LimitRTPRIO= did not take (a container's hard limit of 0, say) is seen at once.
    rlimit limit{};
    if (failure == EPERM && getrlimit(RLIMIT_RTPRIO, &limit) == 0) {
      auto text = [](rlim_t value) {
        return value == RLIM_INFINITY ? std::string("unlimited") : std::to_string(value);
      };
      *error += "; RLIMIT_RTPRIO soft " + text(limit.rlim_cur) + ", hard " + text(limit.rlim_max) +
                " (priority " + std::to_string(priority) + " needed)";
    }
    return false;
  }
  return true;
}

bool request_short_time_slice(uint64_t microseconds, std::string* error) {
  SchedAttr attr{};
  attr.size = sizeof attr;
  attr.sched_policy = 0;  // SCHED_OTHER
  // The thread's nice stays as it is (SCHED_FLAG_KEEP_PARAMS would also skip the slice).
  errno = 0;
  int nice = getpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)));
  if (errno != 0) nice = 0;
  attr.sched_nice = nice;
  attr.sched_runtime = microseconds * 1000;
  if (syscall(SYS_sched_setattr, 0, &attr, 0) != 0) {
    *error = std::strerror(errno);
    return false;
  }
  return true;
}

}  // namespace hubdns
