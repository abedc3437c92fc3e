//! Translation of a classic BPF program (as libpcap compiles it) into an eBPF socket
//! filter that also *counts* the frames it rejects.
//!
//! Why: a classic filter attached to a TAP (TUNATTACHFILTER) drops rejected frames in the
//! kernel, but the kernel adds them to the same `tx_dropped` counter as frames lost to a
//! full queue, so a user cannot tell "filtered out" from "lost". An eBPF program attached
//! with TUNSETFILTEREBPF runs at the same place; the translation sends every reject through
//! one epilogue that adds 1 to a per-CPU array map before returning 0. vnetio reads the
//! map and reports ring-full drops as `tx_dropped` minus that count. The measurements
//! behind this design are in docs/research/tap-filter-counting.md.
//!
//! The translation keeps classic semantics exactly, so the kernel and
//! [`crate::filter::bpf::Program::run`] give the same verdicts:
//! - every packet load is bounds-checked against `skb->len` first, so a load past the
//!   frame is a *counted* reject (the legacy eBPF load would exit with 0 silently);
//! - division and modulo by a zero X reject (eBPF would yield 0 and go on);
//! - jumps compare as unsigned 32-bit values (the JMP32 class), as classic does;
//! - the scratch words M[] that the program reads start at 0 (the verifier also needs
//!   them written before they are read).
//!
//! Registers: R6 = context (required by the legacy packet loads, which clobber R1–R5),
//! R0 = A, R7 = X, R8 = scratch, R9 = frame length. The stack holds M[0..16] at
//! fp-64..fp-4 and the map key at fp-72.
//!
//! This module only builds instructions; loading and attaching are in `device::sys`.

use crate::filter::bpf::{Insn, Program};

/// One eBPF instruction (`struct bpf_insn`): opcode, dst (low nibble) and src (high
/// nibble) registers, offset, immediate.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EbpfInsn {
    /// Opcode.
    pub code: u8,
    /// `dst | src << 4`.
    pub regs: u8,
    /// Jump or memory offset.
    pub off: i16,
    /// Immediate.
    pub imm: i32,
}

const fn ins(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> EbpfInsn {
    EbpfInsn {
        code,
        regs: dst | (src << 4),
        off,
        imm,
    }
}

// Registers.
const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R6: u8 = 6;
const RX: u8 = 7;
const R8: u8 = 8;
const RLEN: u8 = 9;
const FP: u8 = 10;

// Classes, sizes, modes, operations (shared by classic and eBPF where they coincide).
const LD: u8 = 0x00;
const LDX: u8 = 0x01;
const ST: u8 = 0x02;
const STX: u8 = 0x03;
const ALU: u8 = 0x04;
const JMP: u8 = 0x05;
const JMP32: u8 = 0x06;
const ALU64: u8 = 0x07;
const C_RET: u8 = 0x06;
const C_MISC: u8 = 0x07;
const W: u8 = 0x00;
const H: u8 = 0x08;
const B: u8 = 0x10;
const DW: u8 = 0x18;
const IMM: u8 = 0x00;
const ABS: u8 = 0x20;
const IND: u8 = 0x40;
const MEM: u8 = 0x60;
const LEN: u8 = 0x80;
const MSH: u8 = 0xa0;
const ATOMIC: u8 = 0xc0;
const K: u8 = 0x00;
const X: u8 = 0x08;
const ADD: u8 = 0x00;
const DIV: u8 = 0x30;
const AND: u8 = 0x50;
const LSH: u8 = 0x60;
const MOD: u8 = 0x90;
const MOV: u8 = 0xb0;
const JA: u8 = 0x00;
const JEQ: u8 = 0x10;
const JGT: u8 = 0x20;
const JGE: u8 = 0x30;
const JNE: u8 = 0x50;
const JLT: u8 = 0xa0;
const JLE: u8 = 0xb0;
const CALL: u8 = 0x80;
const EXIT: u8 = 0x90;
/// `src_reg` of a 64-bit immediate load that names a map by its fd.
const PSEUDO_MAP_FD: u8 = 1;
/// Helper number of `bpf_map_lookup_elem`.
const FN_MAP_LOOKUP_ELEM: i32 = 1;
const M_BASE: i16 = -64;
const KEY_AT: i16 = -72;
/// Loads starting beyond this can never be inside a frame (frames are < 64 KiB plus
/// headers); they are compiled to an unconditional (counted) reject, which also keeps
/// every bounds-check immediate far from i32 overflow.
const FAR: u32 = 1 << 20;

#[derive(Clone, Copy)]
enum Target {
    Classic(usize),
    Reject,
}

struct Emitter {
    out: Vec<EbpfInsn>,
    fixups: Vec<(usize, Target)>,
}

impl Emitter {
    fn op(&mut self, i: EbpfInsn) {
        self.out.push(i);
    }

    fn jump(&mut self, code: u8, dst: u8, src: u8, imm: i32, to: Target) {
        self.fixups.push((self.out.len(), to));
        self.out.push(ins(code, dst, src, 0, imm));
    }

    fn reject(&mut self) {
        self.jump(JMP | JA, 0, 0, 0, Target::Reject);
    }
}

/// Translate `program` into an eBPF socket filter whose rejects add 1 to entry 0 of the
/// per-CPU array map `map_fd`.
///
/// # Errors
/// A description when the result would not be a valid eBPF program (a jump farther than
/// eBPF's 16-bit offsets reach: only for programs near the 4096-instruction limit).
pub fn translate(program: &Program, map_fd: i32) -> Result<Vec<EbpfInsn>, String> {
    let insns = program.insns();
    let mut e = Emitter {
        out: Vec::with_capacity(insns.len() * 3 + 40),
        fixups: Vec::new(),
    };
    e.op(ins(ALU64 | MOV | X, R6, R1, 0, 0)); // R6 = ctx
    e.op(ins(ALU | MOV | K, R0, 0, 0, 0)); // A = 0
    e.op(ins(ALU | MOV | K, RX, 0, 0, 0)); // X = 0
    e.op(ins(LDX | MEM | W, RLEN, R6, 0, 0)); // len = __sk_buff.len
    let mut read_slots = [false; 16];
    for i in insns {
        let code = i.code as u8;
        if matches!(code & 0x07, LD | LDX) && code & 0xe0 == MEM {
            read_slots[i.k as usize % 16] = true;
        }
    }
    for (slot, _) in read_slots.iter().enumerate().filter(|(_, read)| **read) {
        e.op(ins(ST | MEM | W, FP, 0, m_off(slot as u32), 0));
    }
    let mut starts = Vec::with_capacity(insns.len() + 1);
    for (pc, &i) in insns.iter().enumerate() {
        starts.push(e.out.len());
        translate_one(&mut e, pc, i)?;
    }
    starts.push(e.out.len());
    let reject = e.out.len();
    // Epilogue: map[0] += 1 (on this CPU), return 0.
    e.op(ins(ST | MEM | W, FP, 0, KEY_AT, 0));
    e.op(ins(LD | IMM | DW, R1, PSEUDO_MAP_FD, 0, map_fd));
    e.op(ins(0, 0, 0, 0, 0));
    e.op(ins(ALU64 | MOV | X, R2, FP, 0, 0));
    e.op(ins(ALU64 | ADD | K, R2, 0, 0, i32::from(KEY_AT)));
    e.op(ins(JMP | CALL, 0, 0, 0, FN_MAP_LOOKUP_ELEM));
    e.op(ins(JMP | JEQ | K, R0, 0, 2, 0));
    e.op(ins(ALU64 | MOV | K, R1, 0, 0, 1));
    e.op(ins(STX | ATOMIC | DW, R0, R1, 0, 0)); // lock *(u64 *)(r0 + 0) += r1
    e.op(ins(ALU | MOV | K, R0, 0, 0, 0));
    e.op(ins(JMP | EXIT, 0, 0, 0, 0));
    for &(at, to) in &e.fixups {
        let dest = match to {
            Target::Reject => reject,
            Target::Classic(pc) => *starts
                .get(pc)
                .ok_or_else(|| format!("jump to instruction {pc}, past the program"))?,
        };
        let off = dest as i64 - at as i64 - 1;
        e.out[at].off = i16::try_from(off)
            .map_err(|_| "the program is too long for eBPF's 16-bit jump offsets".to_string())?;
    }
    Ok(e.out)
}

fn m_off(k: u32) -> i16 {
    M_BASE + 4 * (k % 16) as i16
}

fn size_of(code: u8) -> u32 {
    match code & 0x18 {
        W => 4,
        H => 2,
        _ => 1,
    }
}

/// One classic instruction (validated by [`Program::new`]) at `pc`.
fn translate_one(e: &mut Emitter, pc: usize, i: Insn) -> Result<(), String> {
    let code = i.code as u8;
    let k = i.k;
    let ki = k as i32;
    let classic = |off: usize| Target::Classic(pc + 1 + off);
    match code & 0x07 {
        LD => match code & 0xe0 {
            ABS => {
                let size = size_of(code);
                if k >= FAR {
                    e.reject();
                } else {
                    // if len < k + size: reject (counted), else the legacy load.
                    e.jump(JMP | JLT | K, RLEN, 0, (k + size) as i32, Target::Reject);
                    e.op(ins(code, 0, 0, 0, ki));
                }
            }
            IND => {
                let size = size_of(code);
                if k >= FAR {
                    e.reject();
                } else {
                    // r8 = X (zero-extended) + k + size, compared in 64 bits: no wrap.
                    e.op(ins(ALU | MOV | X, R8, RX, 0, 0));
                    e.op(ins(ALU64 | ADD | K, R8, 0, 0, (k + size) as i32));
                    e.jump(JMP | JGT | X, R8, RLEN, 0, Target::Reject);
                    e.op(ins(code, 0, RX, 0, ki));
                }
            }
            IMM => e.op(ins(ALU | MOV | K, R0, 0, 0, ki)),
            LEN => e.op(ins(ALU | MOV | X, R0, RLEN, 0, 0)),
            MEM => e.op(ins(LDX | MEM | W, R0, FP, m_off(k), 0)),
            _ => return Err(format!("instruction {pc}: unsupported load {code:#04x}")),
        },
        LDX => match code & 0xe0 {
            IMM => e.op(ins(ALU | MOV | K, RX, 0, 0, ki)),
            LEN => e.op(ins(ALU | MOV | X, RX, RLEN, 0, 0)),
            MEM => e.op(ins(LDX | MEM | W, RX, FP, m_off(k), 0)),
            MSH => {
                // X = 4 * (P[k] & 0xf); the load goes through R0, so A is kept in R8.
                if k >= FAR {
                    e.reject();
                } else {
                    e.op(ins(ALU64 | MOV | X, R8, R0, 0, 0));
                    e.jump(JMP | JLT | K, RLEN, 0, (k + 1) as i32, Target::Reject);
                    e.op(ins(LD | ABS | B, 0, 0, 0, ki));
                    e.op(ins(ALU | AND | K, R0, 0, 0, 0xf));
                    e.op(ins(ALU | LSH | K, R0, 0, 0, 2));
                    e.op(ins(ALU | MOV | X, RX, R0, 0, 0));
                    e.op(ins(ALU64 | MOV | X, R0, R8, 0, 0));
                }
            }
            _ => return Err(format!("instruction {pc}: unsupported ldx {code:#04x}")),
        },
        ST => e.op(ins(STX | MEM | W, FP, R0, m_off(k), 0)),
        STX => e.op(ins(STX | MEM | W, FP, RX, m_off(k), 0)),
        ALU => {
            let by_x = code & X != 0;
            if by_x && matches!(code & 0xf0, DIV | MOD) {
                e.jump(JMP32 | JEQ | K, RX, 0, 0, Target::Reject);
            }
            // Same encoding in both: a 32-bit ALU operation on A (R0) with K or X (R7).
            e.op(ins(code, R0, if by_x { RX } else { 0 }, 0, ki));
        }
        JMP => {
            let op = code & 0xf0;
            if op == JA {
                e.jump(JMP | JA, 0, 0, 0, classic(k as usize));
                return Ok(());
            }
            let (jt, jf) = (usize::from(i.jt), usize::from(i.jf));
            let src = if code & X != 0 { RX } else { 0 };
            let class = JMP32 | (code & X); // classic compares are unsigned 32-bit
            let inverse = match op {
                JEQ => Some(JNE),
                JGT => Some(JLE),
                JGE => Some(JLT),
                _ => None, // JSET has no inverse
            };
            match (jt, jf, inverse) {
                (0, 0, _) => {}
                (_, 0, _) => e.jump(class | op, R0, src, ki, classic(jt)),
                (0, _, Some(inv)) => e.jump(class | inv, R0, src, ki, classic(jf)),
                _ => {
                    e.jump(class | op, R0, src, ki, classic(jt));
                    e.jump(JMP | JA, 0, 0, 0, classic(jf));
                }
            }
        }
        C_RET => {
            if code & 0x18 == 0x10 {
                // ret a: 0 rejects (counted), anything else keeps that many bytes.
                e.jump(JMP32 | JEQ | K, R0, 0, 0, Target::Reject);
                e.op(ins(JMP | EXIT, 0, 0, 0, 0));
            } else if k == 0 {
                e.reject();
            } else {
                e.op(ins(ALU | MOV | K, R0, 0, 0, ki));
                e.op(ins(JMP | EXIT, 0, 0, 0, 0));
            }
        }
        C_MISC if code == 0x07 => e.op(ins(ALU | MOV | X, RX, R0, 0, 0)), // tax
        C_MISC => e.op(ins(ALU | MOV | X, R0, RX, 0, 0)),                 // txa
        _ => return Err(format!("instruction {pc}: unsupported opcode {code:#04x}")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prog(insns: &[(u16, u8, u8, u32)]) -> Program {
        Program::new(
            insns
                .iter()
                .map(|&(code, jt, jf, k)| Insn { code, jt, jf, k })
                .collect(),
        )
        .unwrap()
    }

    /// libpcap 1.10's program for "udp" on Ethernet.
    const UDP: &[(u16, u8, u8, u32)] = &[
        (0x28, 0, 0, 12),
        (0x15, 0, 2, 0x800),
        (0x30, 0, 0, 23),
        (0x15, 6, 7, 17),
        (0x15, 0, 6, 0x86dd),
        (0x30, 0, 0, 20),
        (0x15, 3, 0, 17),
        (0x15, 0, 3, 0x2c),
        (0x30, 0, 0, 54),
        (0x15, 0, 1, 17),
        (0x6, 0, 0, 0x40000),
        (0x6, 0, 0, 0),
    ];

    #[test]
    fn jumps_stay_inside_and_every_path_ends_in_exit() {
        let out = translate(&prog(UDP), 7).unwrap();
        let last = out.len() - 1;
        assert_eq!(out[last].code, JMP | EXIT);
        for (at, i) in out.iter().enumerate() {
            if i.code & 0x07 == JMP || i.code & 0x07 == JMP32 {
                if matches!(i.code & 0xf0, CALL | EXIT) {
                    continue;
                }
                let dest = at as i64 + 1 + i64::from(i.off);
                assert!(
                    (0..=last as i64).contains(&dest),
                    "insn {at} jumps to {dest}"
                );
            }
        }
        // The map fd is embedded in the 64-bit immediate load of the epilogue.
        assert!(out
            .iter()
            .any(|i| i.code == LD | IMM | DW && i.regs >> 4 == PSEUDO_MAP_FD && i.imm == 7));
    }

    #[test]
    fn far_loads_and_division_by_x_reject_through_the_counter() {
        // ld [2000000]; ret #1  -> the load becomes a jump to the epilogue.
        let out = translate(&prog(&[(0x20, 0, 0, 2_000_000), (0x6, 0, 0, 1)]), 3).unwrap();
        assert_eq!(out[4].code, JMP | JA);
        // div x guards with "if x == 0 goto reject".
        let out = translate(&prog(&[(0x3c, 0, 0, 0), (0x16, 0, 0, 0)]), 3).unwrap();
        assert!(out
            .iter()
            .any(|i| i.code == JMP32 | JEQ | K && i.regs == RX && i.imm == 0));
    }

    #[test]
    fn only_scratch_words_that_are_read_are_zeroed() {
        // st M[3]; ld M[3]; ret a
        let out = translate(
            &prog(&[(0x02, 0, 0, 3), (0x60, 0, 0, 3), (0x16, 0, 0, 0)]),
            3,
        )
        .unwrap();
        let zeroing: Vec<_> = out[..8]
            .iter()
            .filter(|i| i.code == ST | MEM | W && i.regs == FP)
            .collect();
        assert_eq!(zeroing.len(), 1);
        assert_eq!(zeroing[0].off, m_off(3));
    }
}
