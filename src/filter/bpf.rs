//! A classic BPF (cBPF) interpreter: runs the programs libpcap compiles from tcpdump
//! expressions, with the Linux kernel's semantics, on frames in memory — for TUN adapters
//! (whose kernel driver cannot filter), loopback adapters and batches. On TAP adapters the
//! same program is attached in the kernel instead (TUNATTACHFILTER).
//!
//! Semantics follow the kernel's `bpf_check_classic` and interpreter: a program has 1 to
//! 4096 instructions, jumps only forward and inside the program, ends in a `ret`, uses
//! scratch memory M[0..16]; a load beyond the frame, or a division by a zero X, ends the
//! program with 0 (reject). Ancillary loads (negative offsets, `SKF_AD_*`) are refused at
//! validation: libpcap emits them only for live Linux sockets, never for the programs
//! vnetio compiles. Arbitrary programs and frames never panic.

/// One instruction (`struct sock_filter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    /// Opcode.
    pub code: u16,
    /// Jump offset if true.
    pub jt: u8,
    /// Jump offset if false.
    pub jf: u8,
    /// Constant.
    pub k: u32,
}

/// Longest program the kernel accepts (BPF_MAXINSNS).
pub const MAX_INSNS: usize = 4096;
const MEMWORDS: usize = 16;

// Instruction classes and fields (include/uapi/linux/filter.h, bpf_common.h).
const LD: u16 = 0x00;
const LDX: u16 = 0x01;
const ST: u16 = 0x02;
const STX: u16 = 0x03;
const ALU: u16 = 0x04;
const JMP: u16 = 0x05;
const RET: u16 = 0x06;
const MISC: u16 = 0x07;
const W: u16 = 0x00;
const H: u16 = 0x08;
const B: u16 = 0x10;
const IMM: u16 = 0x00;
const ABS: u16 = 0x20;
const IND: u16 = 0x40;
const MEM: u16 = 0x60;
const LEN: u16 = 0x80;
const MSH: u16 = 0xa0;
const SRC_X: u16 = 0x08;
const RET_A: u16 = 0x10;
const JA: u16 = 0x00;
const JEQ: u16 = 0x10;
const JGT: u16 = 0x20;
const JGE: u16 = 0x30;
const JSET: u16 = 0x40;
const TXA: u16 = 0x80;

/// A program that passed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    insns: Vec<Insn>,
}

fn class(code: u16) -> u16 {
    code & 0x07
}

impl Program {
    /// Validate `insns` as the kernel would.
    pub fn new(insns: Vec<Insn>) -> Result<Self, String> {
        if insns.is_empty() || insns.len() > MAX_INSNS {
            return Err(format!(
                "a program has 1 to {MAX_INSNS} instructions, not {}",
                insns.len()
            ));
        }
        for (pc, i) in insns.iter().enumerate() {
            let bad = |why: &str| Err(format!("instruction {pc} (code {:#06x}): {why}", i.code));
            let mode = i.code & 0xe0;
            let size = i.code & 0x18;
            match class(i.code) {
                LD => {
                    if !matches!(size, W | H | B) || (size != W && !matches!(mode, ABS | IND)) {
                        return bad("bad load size");
                    }
                    match mode {
                        IMM | LEN => {}
                        ABS | IND if i.k < 0x8000_0000 => {}
                        ABS | IND => {
                            return bad("ancillary (negative-offset) loads are not supported")
                        }
                        MEM if (i.k as usize) < MEMWORDS => {}
                        _ => return bad("bad load mode or scratch index"),
                    }
                }
                LDX => match (mode, size) {
                    (IMM | LEN, W) => {}
                    (MEM, W) if (i.k as usize) < MEMWORDS => {}
                    (MSH, B) if i.k < 0x8000_0000 => {}
                    _ => return bad("bad ldx"),
                },
                ST | STX => {
                    if i.code & !0x07 != 0 || i.k as usize >= MEMWORDS {
                        return bad("bad store");
                    }
                }
                ALU => {
                    let op = i.code & 0xf0;
                    if op > 0xa0 || i.code & !0xff != 0 {
                        return bad("unknown ALU operation");
                    }
                    if (op == 0x30 || op == 0x90) && i.code & SRC_X == 0 && i.k == 0 {
                        return bad("division by a constant zero");
                    }
                    if (op == 0x60 || op == 0x70) && i.code & SRC_X == 0 && i.k >= 32 {
                        return bad("shift by a constant of 32 or more");
                    }
                }
                JMP => {
                    let op = i.code & 0xf0;
                    let rest = insns.len() - pc - 1;
                    let in_range = |off: usize| off < rest;
                    match op {
                        JA if i.code == JMP && in_range(i.k as usize) => {}
                        JEQ | JGT | JGE | JSET
                            if i.code & !0xf8 == JMP
                                && in_range(usize::from(i.jt))
                                && in_range(usize::from(i.jf)) => {}
                        _ => return bad("bad jump (unknown, or out of the program)"),
                    }
                }
                RET => {
                    // `ret #k` and `ret a` (the kernel refuses `ret x`).
                    if !matches!(i.code & 0x18, 0x00 | RET_A) || i.code & !0x1f != 0 {
                        return bad("bad return");
                    }
                }
                MISC => {
                    if i.code & !0x87 != 0 {
                        return bad("unknown instruction");
                    }
                }
                _ => return bad("unknown instruction class"),
            }
        }
        if class(insns[insns.len() - 1].code) != RET {
            return Err("a program must end with a ret instruction".into());
        }
        Ok(Program { insns })
    }

    /// The instructions.
    pub fn insns(&self) -> &[Insn] {
        &self.insns
    }

    /// Run on `frame`: the number of bytes to keep (0: reject).
    pub fn run(&self, frame: &[u8]) -> u32 {
        let (mut a, mut x) = (0u32, 0u32);
        let mut mem = [0u32; MEMWORDS];
        let mut pc = 0usize;
        let load = |at: u32, size: u16| -> Option<u32> {
            let at = at as usize;
            let n = match size {
                W => 4,
                H => 2,
                _ => 1,
            };
            let b = frame.get(at..at.checked_add(n)?)?;
            Some(b.iter().fold(0u32, |v, &byte| (v << 8) | u32::from(byte)))
        };
        // Validation guarantees forward jumps inside the program and a final ret, so this
        // loop ends; `get` keeps it panic-free regardless.
        while let Some(&i) = self.insns.get(pc) {
            pc += 1;
            let size = i.code & 0x18;
            match class(i.code) {
                LD => {
                    a = match i.code & 0xe0 {
                        IMM => i.k,
                        LEN => frame.len() as u32,
                        MEM => mem[i.k as usize % MEMWORDS],
                        ABS => match load(i.k, size) {
                            Some(v) => v,
                            None => return 0,
                        },
                        _ => match x.checked_add(i.k).and_then(|at| load(at, size)) {
                            Some(v) => v,
                            None => return 0,
                        },
                    }
                }
                LDX => {
                    x = match i.code & 0xe0 {
                        IMM => i.k,
                        LEN => frame.len() as u32,
                        MEM => mem[i.k as usize % MEMWORDS],
                        _ => match load(i.k, B) {
                            Some(v) => (v & 0x0f) * 4,
                            None => return 0,
                        },
                    }
                }
                ST => mem[i.k as usize % MEMWORDS] = a,
                STX => mem[i.k as usize % MEMWORDS] = x,
                ALU => {
                    let v = if i.code & SRC_X != 0 { x } else { i.k };
                    a = match i.code & 0xf0 {
                        0x00 => a.wrapping_add(v),
                        0x10 => a.wrapping_sub(v),
                        0x20 => a.wrapping_mul(v),
                        0x30 => match a.checked_div(v) {
                            Some(q) => q,
                            None => return 0,
                        },
                        0x40 => a | v,
                        0x50 => a & v,
                        // The kernel runs classic programs as eBPF, whose 32-bit shifts use
                        // the low 5 bits of the count (a shift by a constant ≥ 32 is refused
                        // at validation).
                        0x60 => a.wrapping_shl(v),
                        0x70 => a.wrapping_shr(v),
                        0x80 => a.wrapping_neg(),
                        0x90 => match a.checked_rem(v) {
                            Some(r) => r,
                            None => return 0,
                        },
                        _ => a ^ v,
                    }
                }
                JMP => {
                    let v = if i.code & SRC_X != 0 { x } else { i.k };
                    let taken = match i.code & 0xf0 {
                        JA => {
                            pc += i.k as usize;
                            continue;
                        }
                        JEQ => a == v,
                        JGT => a > v,
                        JGE => a >= v,
                        _ => a & v != 0,
                    };
                    pc += usize::from(if taken { i.jt } else { i.jf });
                }
                RET => {
                    return match i.code & 0x18 {
                        RET_A => a,
                        _ => i.k,
                    }
                }
                _ => {
                    if i.code & TXA != 0 {
                        a = x;
                    } else {
                        x = a;
                    }
                }
            }
        }
        0
    }

    /// Whether `frame` passes (the program returns non-zero).
    pub fn accepts(&self, frame: &[u8]) -> bool {
        self.run(frame) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn i(code: u16, jt: u8, jf: u8, k: u32) -> Insn {
        Insn { code, jt, jf, k }
    }

    /// `udp` for DLT_EN10MB as libpcap 1.10.6 compiles it (`pcap_compile`, optimised).
    fn udp_program() -> Program {
        Program::new(vec![
            i(0x28, 0, 0, 0xc),
            i(0x15, 0, 2, 0x800),
            i(0x30, 0, 0, 0x17),
            i(0x15, 6, 7, 0x11),
            i(0x15, 0, 6, 0x86dd),
            i(0x30, 0, 0, 0x14),
            i(0x15, 3, 0, 0x11),
            i(0x15, 0, 3, 0x2c),
            i(0x30, 0, 0, 0x36),
            i(0x15, 0, 1, 0x11),
            i(0x06, 0, 0, 0x40000),
            i(0x06, 0, 0, 0x0),
        ])
        .unwrap()
    }

    #[test]
    fn runs_a_libpcap_program() {
        let p = udp_program();
        let udp = crate::wire::layout::tests::UDP4_FRAME;
        assert_eq!(p.run(&udp), 0x40000);
        let mut tcp = udp;
        tcp[23] = 6;
        assert!(!p.accepts(&tcp));
        assert!(
            !p.accepts(&udp[..20]),
            "a short frame is rejected, not a panic"
        );
        assert!(!p.accepts(&[]));
    }

    #[test]
    fn validation_is_the_kernels() {
        assert!(Program::new(vec![]).is_err());
        assert!(Program::new(vec![i(0x28, 0, 0, 12)])
            .unwrap_err()
            .contains("end with a ret"));
        assert!(Program::new(vec![i(0x15, 5, 0, 1), i(0x6, 0, 0, 1)])
            .unwrap_err()
            .contains("jump"));
        assert!(Program::new(vec![i(0x34, 0, 0, 0), i(0x6, 0, 0, 1)])
            .unwrap_err()
            .contains("zero"));
        assert!(
            Program::new(vec![i(0x20, 0, 0, 0xffff_f000), i(0x6, 0, 0, 1)])
                .unwrap_err()
                .contains("ancillary")
        );
        assert!(Program::new(vec![i(0x60, 0, 0, 16), i(0x6, 0, 0, 1)]).is_err());
        assert!(Program::new(vec![i(0x6, 0, 0, 1); MAX_INSNS + 1]).is_err());
    }

    #[test]
    fn alu_memory_and_division_by_x() {
        // A = 7; M[3] = A; X = 0; A = A / X  → reject (kernel semantics).
        let p = Program::new(vec![
            i(0x00, 0, 0, 7),
            i(0x02, 0, 0, 3),
            i(0x01, 0, 0, 0),
            i(0x3c, 0, 0, 0),
            i(0x16, 0, 0, 0),
        ])
        .unwrap();
        assert_eq!(p.run(b""), 0);
        // A = M[3] after storing 7; ret A.
        let p = Program::new(vec![
            i(0x00, 0, 0, 7),
            i(0x02, 0, 0, 3),
            i(0x00, 0, 0, 1),
            i(0x60, 0, 0, 3),
            i(0x16, 0, 0, 0),
        ])
        .unwrap();
        assert_eq!(p.run(b""), 7);
        // X = 4*(P[0]&0xf) (msh); txa; ret A.
        let p = Program::new(vec![i(0xb1, 0, 0, 0), i(0x87, 0, 0, 0), i(0x16, 0, 0, 0)]).unwrap();
        assert_eq!(p.run(&[0x45]), 20);
    }

    #[test]
    fn random_programs_never_panic() {
        let mut seed = 0x1234_5678_9abc_def0u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let frame: Vec<u8> = (0..100u8).collect();
        let mut valid = 0;
        for _ in 0..20_000 {
            let n = (next() % 12 + 1) as usize;
            let insns: Vec<Insn> = (0..n)
                .map(|_| {
                    let r = next();
                    i(
                        (r & 0xff) as u16,
                        (r >> 8) as u8 % 4,
                        (r >> 16) as u8 % 4,
                        (r >> 32) as u32 % 120,
                    )
                })
                .chain(std::iter::once(i(0x16, 0, 0, 0)))
                .collect();
            if let Ok(p) = Program::new(insns) {
                valid += 1;
                let _ = p.run(&frame);
                let _ = p.run(&frame[..7]);
            }
        }
        assert!(
            valid > 100,
            "the generator should produce some valid programs ({valid})"
        );
    }
}
