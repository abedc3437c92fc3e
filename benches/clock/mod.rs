//! The two clocks the criterion benches measure with (`mod clock;` in a bench): criterion's
//! own wall clock, and [`ThreadCpu`], the benchmark thread's CPU time
//! (`CLOCK_THREAD_CPUTIME_ID`), i.e. per core, which other work on a shared machine does
//! not inflate by taking the CPU away (it still slows the code through shared caches and
//! the sibling hyperthread). On an idle machine the two agree.

use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use rustix::time::{clock_gettime, ClockId};

/// The benchmark thread's CPU time, as a criterion measurement (values in ns, shown as
/// durations; throughput per CPU second).
pub struct ThreadCpu;

impl Measurement for ThreadCpu {
    type Intermediate = Duration;
    type Value = Duration;

    fn start(&self) -> Duration {
        thread_cpu()
    }
    fn end(&self, start: Duration) -> Duration {
        thread_cpu().saturating_sub(start)
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, v: &Duration) -> f64 {
        v.as_secs_f64() * 1e9
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        static WALL: WallTime = WallTime;
        WALL.formatter()
    }
}

fn thread_cpu() -> Duration {
    let t = clock_gettime(ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// The bench's `main`: every benchmark of `$wall` on criterion's wall clock (group
/// `wall_clock`), then every one of `$cpu` on [`ThreadCpu`] (group `cpu_clock`).
macro_rules! main_with_both_clocks {
    ($wall:path, $cpu:path) => {
        criterion::criterion_group!(wall_clock, $wall);
        criterion::criterion_group! {
            name = cpu_clock;
            config = criterion::Criterion::default().with_measurement($crate::clock::ThreadCpu);
            targets = $cpu
        }
        criterion::criterion_main!(wall_clock, cpu_clock);
    };
}
pub(crate) use main_with_both_clocks;
