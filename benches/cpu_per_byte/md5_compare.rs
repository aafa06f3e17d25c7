//! The MD5 implementations available here, on the same buffer in the same run: the `md-5`
//! crate with its assembly backend (what the supernode uses) and OpenSSL's through the
//! `openssl` crate. Two passes over every byte ingested (each piece's md5 and the whole
//! source's) make MD5 the largest single cost of a cold download.

use benchkit::stats::median;
use md5::Digest;

/// This thread's CPU seconds so far: rates per CPU-second hold on a loaded machine too.
fn thread_cpu_secs() -> f64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec into `t`, which outlives the call.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

/// MiB per CPU-second per implementation, median of `reps` passes over `mib` MiB.
pub struct Md5Rates {
    pub md5_crate: f64,
    pub openssl: f64,
    pub mib: u64,
    pub reps: usize,
}

pub fn measure(mib: u64, reps: usize) -> Md5Rates {
    let buf: Vec<u8> = (0..mib << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        let t = thread_cpu_secs();
        // Fed as the CDN writer feeds it: 64 KiB at a time.
        let mut h = md5::Md5::new();
        for chunk in buf.chunks(64 << 10) {
            h.update(chunk);
        }
        let a = h.finalize();
        ours.push(mib as f64 / (thread_cpu_secs() - t));

        let t = thread_cpu_secs();
        let mut h = openssl::hash::Hasher::new(openssl::hash::MessageDigest::md5()).expect("OpenSSL MD5");
        for chunk in buf.chunks(64 << 10) {
            h.update(chunk).expect("OpenSSL MD5 update");
        }
        let b = h.finish().expect("OpenSSL MD5 finish");
        theirs.push(mib as f64 / (thread_cpu_secs() - t));
        assert_eq!(a.as_slice(), &b[..], "both compute the same digest");
    }
    Md5Rates { md5_crate: median(&ours), openssl: median(&theirs), mib, reps }
}

impl Md5Rates {
    pub fn section(&self) -> String {
        let per_gib = |rate: f64| 2.0 * 1024.0 / rate;
        format!(
            "### MD5: `md-5` (asm) against OpenSSL, one thread, same run\n\n\
             | implementation | MiB per CPU-second (median of {reps} × {mib} MiB, 64 KiB updates) | CPU-s per GiB for the two passes |\n\
             |---|---|---|\n\
             | `md-5` 0.10 with `asm` (used) | **{:.0}** | {:.2} |\n\
             | OpenSSL {} through `openssl` | **{:.0}** | {:.2} |\n\n\
             `md-5` ÷ OpenSSL: **{:.2}×**. {}\n\n",
            self.md5_crate,
            per_gib(self.md5_crate),
            openssl::version::version().trim_start_matches("OpenSSL "),
            self.openssl,
            per_gib(self.openssl),
            self.md5_crate / self.openssl,
            if self.md5_crate >= 0.95 * self.openssl {
                "The supernode keeps `md-5`: OpenSSL is not faster here, and `md-5` needs no system library."
            } else {
                "OpenSSL is faster here by more than 5%: the supernode should hash through it."
            },
            reps = self.reps,
            mib = self.mib,
        )
    }
}
