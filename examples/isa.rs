//! Tells which ISA paths this CPU runs, for the test scripts (and for curious users).
//!
//! usage: isa [NAME]
//!   without NAME   one line per path: `avx2: supported` or `avx512: CPU lacks avx512f`,
//!                  then the GEMM block sizes derived from this CPU's caches
//!   NAME           exit status 0 when that path runs here; else prints
//!                  `NAME: skipped, CPU lacks ...` and exits 1 (2 for an unknown name)
//!
//! `RINFER_CPU_MASK=avx512f` hides features, as on an older CPU.

use rinfer::Isa;

fn line(isa: Isa) -> (bool, String) {
    let missing = isa.missing();
    if missing.is_empty() {
        (true, format!("{isa}: supported"))
    } else {
        (false, format!("{isa}: CPU lacks {}", missing.join(", ")))
    }
}

fn main() {
    match std::env::args().nth(1) {
        None => {
            for isa in Isa::ALL {
                println!("{}", line(isa).1);
            }
            let b = rinfer::kernels::gemm::driver::blocking();
            println!(
                "GEMM blocking: L1d {} KiB, L2 {} KiB per core -> B block {} KiB, A block {} KiB, K slice {} (packed A) / {} (A in place)",
                b.l1d >> 10,
                b.l2 >> 10,
                b.b_block >> 10,
                b.a_block >> 10,
                b.kc_packed,
                b.kc_direct
            );
            let mask = rinfer::kernels::masked_features();
            if !mask.is_empty() {
                println!("(RINFER_CPU_MASK hides {})", mask.join(", "));
            }
        }
        Some(name) => match Isa::parse(&name) {
            Ok(isa) => {
                if !isa.is_supported() {
                    println!("{isa}: skipped, CPU lacks {}", isa.missing().join(", "));
                    std::process::exit(1);
                }
            }
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(2);
            }
        },
    }
}
