;; kernels.wat: the WebAssembly SIMD kernels of the simd/ backend (f32x4, multiply-adds as relaxed_madd).
;;
;; One source, two binaries (build.mjs): "relaxed" keeps every f32x4.relaxed_madd (a·b + c), which V8 on
;; x64 compiles to one FMA instruction (one rounding) when the CPU has FMA3; "baseline" has each rewritten
;; to (f32x4.add (f32x4.mul a b) c) for hosts without relaxed SIMD. Write multiply-adds only in the folded
;; form (f32x4.relaxed_madd a b c) so the rewriter finds them. Whichever binary runs, every thread runs the
;; same one, so the instruction sequence of an output element is still fixed.
;;
;; One module, instantiated by the main thread and by every worker on ONE shared memory. Work is handed out
;; through a control block at address 0 (layout mirrored in layout.ts) and split into chunks that threads
;; claim with an atomic compare-exchange, so a slow or sleeping thread never holds the others up: whoever
;; is awake takes the next chunk. Every output element is computed by exactly one chunk, with the same
;; instruction sequence whichever thread runs it, so results do not depend on the thread count.
;;
;; Weight layout (written once by the TS side, layout.ts, never per call). A matrix (rows, cols) is padded
;; to a multiple of 4 rows and of 64 columns (zeros), cut into row GROUPS of 4 rows and column TILES of 64,
;; and stored group by group, tile by tile, one row's RUN of the tile after the other:
;;   group g = [tile 0: run(4g) run(4g+1) run(4g+2) run(4g+3)] [tile 1: ...] ...
;; A run is 8 row-blocks of 8 columns:
;;   f32:      32 bytes per row-block  [w0 .. w7]                        → runs of 256 B, group-tiles of 1 KiB
;;   bf16/f16: 16 bytes per row-block  [w0 w4 w1 w5 w2 w6 w3 w7] (u16)   → runs of 128 B, group-tiles of 512 B
;; Kernels walk 4 (one token) or 2 (four tokens) row pointers: +1 row-block per step, +3 runs at the end
;; of a tile. A dense pass over a group is one contiguous stream; a selected row (sparse MLP) is read
;; alone, in whole cache lines.
;; The 16-bit order puts w_j in the low half and w_(j+4) in the high half of i32 lane j, so ONE 16-byte
;; load widens to [w0..w3] = lane << 16 and [w4..w7] = lane & 0xffff0000 (bf16 is the high half of an
;; f32): two integer ops per 8 weights, and x stays in its natural order.
;;
;; Reduction order (the same in every matmul kernel, so a row's result does not depend on T, on the
;; kernel that ran it, or on the thread): one f32x4 accumulator per (row, token), per block in column
;; order acc += madd(w[0..3], x[0..3], w[4..7]·x[4..7]); result = (a0 + a1) + (a2 + a3) over its lanes.
;; A term passes through at most ⌈cols/8⌉ + 4 roundings (its product, the block's multiply-add, the
;; accumulator's, two lane sums): the bound the tests use. (Measured on Zen 5 under V8 11.3: two
;; accumulators per (row, token) chained through FMAs only, lo = madd(w[0..3], x[0..3], lo) and
;; hi = madd(w[4..7], x[4..7], hi), were 25% slower: each chain then waits on the FMA latency, and
;; 8 accumulators plus the 4-row kernel's operands did not fit V8's 15 free xmm registers.)
;;
;; Quantized weights (Q8_0, Q4_0, Q4_K, Q6_K) have their own layout, activation records and integer kernels:
;; see "quantized weights" below.
;;
;; Activations (x, outputs, attention inputs) live in a scratch region above the weights, copied per call
;; by the TS side. x is (T, tiles·64) f32 row-major (zero padded); matmul output is (T, rows computed) f32
;; with a token stride rounded up to 16 outputs (64 bytes).

(module
  (import "env" "memory" (memory 1 65536 shared))

  ;; ---- control block (byte addresses; layout.ts has the same numbers) ----
  ;; 64  CLAIM      (seq << 16) | next chunk index; index 0xffff = closed
  ;; 128 COMPLETED  chunks finished in the current job
  ;; 192 OP         job kind: 0 matmul, 1 attention, 2 read probe, 3 transposed rows (sparse down_proj), 4 gather,
  ;;                5 activation quantization, 6 quantized column gather
  ;; 196 NCHUNKS    chunks in the current job (≤ 65534)
  ;; 200 + 4i       ARG i

  ;; @inline
  (func $arg (param $i i32) (result i32)
    (i32.load offset=200 (i32.shl (local.get $i) (i32.const 2))))

  ;; Claim and run chunks of the current job until none is left; returns how many this thread ran.
  ;; A chunk is claimed BEFORE the job's arguments are read: the main thread rewrites them only after
  ;; every chunk of the job has completed, so a claimed chunk always sees its own job's arguments.
  (func $work (export "work") (result i32)
    (local $v i32) (local $idx i32) (local $ran i32)
    (block $none
      (loop $claim
        (local.set $v (i32.atomic.load (i32.const 64)))
        (local.set $idx (i32.and (local.get $v) (i32.const 0xffff)))
        (br_if $none (i32.ge_u (local.get $idx) (i32.atomic.load (i32.const 196))))
        (br_if $claim (i32.ne
          (i32.atomic.rmw.cmpxchg (i32.const 64) (local.get $v) (i32.add (local.get $v) (i32.const 1)))
          (local.get $v)))
        (call $chunk (local.get $idx))
        (drop (i32.atomic.rmw.add (i32.const 128) (i32.const 1)))
        (local.set $ran (i32.add (local.get $ran) (i32.const 1)))
        (br $claim)))
    (local.get $ran))

  (func $chunk (param $idx i32)
    (block $gq
    (block $quant
    (block $gather
      (block $transposed
        (block $probe
          (block $attention
            (block $matmul
              (br_table $matmul $attention $probe $transposed $gather $quant $gq (i32.load (i32.const 192))))
            (call $matmulChunk (local.get $idx))
            (return))
          (call $attentionItem (local.get $idx))
          (return))
        (call $probeChunk (local.get $idx))
        (return))
      (call $transposedChunk (local.get $idx))
      (return))
    (call $gatherChunk (local.get $idx))
    (return))
    (call $quantizeChunk (local.get $idx))
    (return))
    (call $gatherQuantChunk (local.get $idx)))

  ;; ---- quantized column gather (coarse sparsity's down_proj), re-blocked as Q8_0 ----
  ;; ARG 0 storage (3 Q8_0, 4 Q4_0, 5 Q4_K, 6 Q6_K)  1 src runs  2 src scale records  3 src record bytes
  ;;     4 src tiles  5 kept columns (n i32, ascending)  6 n  7 dst runs (Q8_0)  8 dst scale records
  ;;     9 dst record bytes  10 dst tiles  11 rows  12 rows per chunk
  ;; Each row: the kept columns' values dequantized exactly as ggml's dequantize_row_* computes them (in
  ;; f32, the same operations: Quant.dequantize), requantized in blocks of 32 (zeros past n) by ggml's
  ;; quantize_row_q8_0_ref (d = amax/127, q = roundf(x/d), d stored as fp16) into the Q8_0 matrix. One
  ;; row per thread at a time; the row's 32 values are staged in registers as 8 f32x4.
  (func $gatherQuantChunk (param $idx i32)
    (local $r i32) (local $r1 i32) (local $n i32) (local $j i32) (local $k i32) (local $b i32)
    (local $v0 v128) (local $v1 v128) (local $v2 v128) (local $v3 v128) (local $v4 v128) (local $v5 v128) (local $v6 v128) (local $v7 v128)
    (local $amax f32) (local $d f32) (local $id f32) (local $q v128) (local $dst i32)
    (local.set $r (i32.mul (local.get $idx) (call $arg (i32.const 12))))
    (local.set $r1 (i32.add (local.get $r) (call $arg (i32.const 12))))
    (if (i32.gt_u (local.get $r1) (call $arg (i32.const 11))) (then (local.set $r1 (call $arg (i32.const 11)))))
    (local.set $n (call $arg (i32.const 6)))
    (block $rowsDone
      (loop $rows
        (br_if $rowsDone (i32.ge_u (local.get $r) (local.get $r1)))
        (local.set $b (i32.const 0))
        (local.set $j (i32.const 0))
        (block $blocksDone
          (loop $blocks
            (br_if $blocksDone (i32.ge_u (local.get $j) (local.get $n)))
            ;; the block's 32 values (zeros past n), 4 at a time
            (local.set $v0 (call $keptValues4 (local.get $r) (local.get $j)))
            (local.set $v1 (call $keptValues4 (local.get $r) (i32.add (local.get $j) (i32.const 4))))
            (local.set $v2 (call $keptValues4 (local.get $r) (i32.add (local.get $j) (i32.const 8))))
            (local.set $v3 (call $keptValues4 (local.get $r) (i32.add (local.get $j) (i32.const 12))))
            (local.set $v4 (call $keptValues4 (local.get $r) (i32.add (local.get $j) (i32.const 16))))
            (local.set $v5 (call $keptValues4 (local.get $r) (i32.add (local.get $j) (i32.const 20))))
            (local.set $v6 (call $keptValues4 (local.get $r) (i32.add (local.get $j) (i32.const 24))))
            (local.set $v7 (call $keptValues4 (local.get $r) (i32.add (local.get $j) (i32.const 28))))
            (local.set $q (f32x4.max (f32x4.max (f32x4.max (f32x4.abs (local.get $v0)) (f32x4.abs (local.get $v1))) (f32x4.max (f32x4.abs (local.get $v2)) (f32x4.abs (local.get $v3))))
                                     (f32x4.max (f32x4.max (f32x4.abs (local.get $v4)) (f32x4.abs (local.get $v5))) (f32x4.max (f32x4.abs (local.get $v6)) (f32x4.abs (local.get $v7))))))
            (local.set $amax (f32.max (f32.max (f32x4.extract_lane 0 (local.get $q)) (f32x4.extract_lane 1 (local.get $q)))
                                      (f32.max (f32x4.extract_lane 2 (local.get $q)) (f32x4.extract_lane 3 (local.get $q)))))
            (local.set $d (f32.div (local.get $amax) (f32.const 127)))
            (local.set $id (select (f32.div (f32.const 1) (local.get $d)) (f32.const 0) (f32.ne (local.get $d) (f32.const 0))))
            ;; block b of the row: tile b >> 3, 32 bytes at (b & 7)·32 of the run; d (rounded to fp16, stored
            ;; widened to f32 like every Q8_0 scale in simd) at record 4b
            (local.set $dst (call $rowAt (call $arg (i32.const 7)) (local.get $r) (call $arg (i32.const 10)) (i32.const 256)))
            (local.set $dst (i32.add (local.get $dst) (i32.add (i32.shl (i32.shr_u (local.get $b) (i32.const 3)) (i32.const 10)) (i32.shl (i32.and (local.get $b) (i32.const 7)) (i32.const 5)))))
            (v128.store (local.get $dst) (i8x16.narrow_i16x8_s
              (i16x8.narrow_i32x4_s (call $roundf4 (f32x4.mul (local.get $v0) (f32x4.splat (local.get $id)))) (call $roundf4 (f32x4.mul (local.get $v1) (f32x4.splat (local.get $id)))))
              (i16x8.narrow_i32x4_s (call $roundf4 (f32x4.mul (local.get $v2) (f32x4.splat (local.get $id)))) (call $roundf4 (f32x4.mul (local.get $v3) (f32x4.splat (local.get $id)))))))
            (v128.store offset=16 (local.get $dst) (i8x16.narrow_i16x8_s
              (i16x8.narrow_i32x4_s (call $roundf4 (f32x4.mul (local.get $v4) (f32x4.splat (local.get $id)))) (call $roundf4 (f32x4.mul (local.get $v5) (f32x4.splat (local.get $id)))))
              (i16x8.narrow_i32x4_s (call $roundf4 (f32x4.mul (local.get $v6) (f32x4.splat (local.get $id)))) (call $roundf4 (f32x4.mul (local.get $v7) (f32x4.splat (local.get $id)))))))
            (f32.store (i32.add (i32.add (call $arg (i32.const 8)) (i32.mul (local.get $r) (call $arg (i32.const 9)))) (i32.shl (local.get $b) (i32.const 2)))
              (call $h2f (call $f16bits (local.get $d))))
            (local.set $b (i32.add (local.get $b) (i32.const 1)))
            (local.set $j (i32.add (local.get $j) (i32.const 32)))
            (br $blocks)))
        (local.set $r (i32.add (local.get $r) (i32.const 1)))
        (br $rows))))

  ;; C's roundf (half away from zero) of each lane, as i32: trunc, plus the sign where the dropped part is ≥ ½
  ;; (v − trunc(v) is exact). ggml's reference quantizers round this way; the activation quantizers do not.
  ;; @inline
  (func $roundf4 (param $v v128) (result v128)
    (local $t v128)
    (local.set $t (f32x4.trunc (local.get $v)))
    ;; sign(v) as i32 is (v >> 31) | 1 on its bits (−0 has no dropped part)
    (i32x4.add (i32x4.trunc_sat_f32x4_s (local.get $t))
      (v128.and (f32x4.ge (f32x4.abs (f32x4.sub (local.get $v) (local.get $t))) (v128.const f32x4 0.5 0.5 0.5 0.5))
        (v128.or (i32x4.shr_s (local.get $v) (i32.const 31)) (v128.const i32x4 1 1 1 1)))))

  ;; v ≥ 0 (a block scale) as fp16 bits, rounded to nearest even (ggml's FP32_TO_FP16).
  ;; @inline
  (func $f16bits (param $v f32) (result i32)
    (local $r f32)
    (local.set $r (call $f16round (local.get $v)))
    (if (result i32) (f32.lt (local.get $r) (f32.const 0x1p-14))
      (then (i32.trunc_f32_u (f32.mul (local.get $r) (f32.const 0x1p24))))
      (else (if (result i32) (f32.ge (local.get $r) (f32.const 65536))
        (then (i32.const 0x7c00))
        (else (i32.sub (i32.shr_u (i32.reinterpret_f32 (local.get $r)) (i32.const 13)) (i32.const 0x1c000)))))))

  ;; Kept columns j .. j+3 of source row r (past n: 0), each exactly as ggml dequantizes it.
  (func $keptValues4 (param $r i32) (param $j i32) (result v128)
    (f32x4.replace_lane 3
      (f32x4.replace_lane 2
        (f32x4.replace_lane 1
          (f32x4.splat (call $keptValue (local.get $r) (local.get $j)))
          (call $keptValue (local.get $r) (i32.add (local.get $j) (i32.const 1))))
        (call $keptValue (local.get $r) (i32.add (local.get $j) (i32.const 2))))
      (call $keptValue (local.get $r) (i32.add (local.get $j) (i32.const 3)))))

  ;; Kept column j of source row r dequantized (0 when j ≥ n), with Quant.dequantize's f32 operations.
  (func $keptValue (param $r i32) (param $j i32) (result f32)
    (local $c i32) (local $cc i32) (local $run i32) (local $rec i32) (local $q i32) (local $h i32) (local $k i32) (local $l i32) (local $p i32)
    (if (i32.ge_u (local.get $j) (call $arg (i32.const 6))) (then (return (f32.const 0))))
    (local.set $c (i32.load (i32.add (call $arg (i32.const 5)) (i32.shl (local.get $j) (i32.const 2)))))
    (local.set $cc (i32.and (local.get $c) (i32.const 255)))
    (local.set $rec (i32.add (call $arg (i32.const 2)) (i32.mul (local.get $r) (call $arg (i32.const 3)))))
    (block $q6k (block $q4k (block $q4 (block $q8
      (br_table $q8 $q4 $q4k $q6k (i32.sub (call $arg (i32.const 0)) (i32.const 3))))
      ;; Q8_0: d·q (exact)
      (local.set $run (call $rowAt (call $arg (i32.const 1)) (local.get $r) (call $arg (i32.const 4)) (i32.const 256)))
      (return (f32.mul (f32.convert_i32_s (i32.load8_s (i32.add (i32.add (local.get $run) (i32.shl (i32.shr_u (local.get $c) (i32.const 8)) (i32.const 10))) (local.get $cc))))
        (f32.load (i32.add (local.get $rec) (i32.shl (i32.shr_u (local.get $c) (i32.const 5)) (i32.const 2)))))))
      ;; Q4_0: (q − 8)·d (exact); block (cc >> 5) at 16 bytes each, byte cc & 15, high nibble for columns 16..31
      (local.set $run (call $rowAt (call $arg (i32.const 1)) (local.get $r) (call $arg (i32.const 4)) (i32.const 128)))
      (local.set $q (i32.load8_u (i32.add (i32.add (local.get $run) (i32.shl (i32.shr_u (local.get $c) (i32.const 8)) (i32.const 9)))
        (i32.add (i32.shl (i32.shr_u (local.get $cc) (i32.const 5)) (i32.const 4)) (i32.and (local.get $cc) (i32.const 15))))))
      (local.set $q (i32.and (i32.shr_u (local.get $q) (select (i32.const 4) (i32.const 0) (i32.and (local.get $cc) (i32.const 16)))) (i32.const 15)))
      (return (f32.mul (f32.convert_i32_s (i32.sub (local.get $q) (i32.const 8)))
        (call $h2f (i32.load16_u (i32.add (local.get $rec) (i32.shl (i32.shr_u (local.get $c) (i32.const 5)) (i32.const 1))))))))
    ;; Q4_K: fl(fl(d·sc)·q) − fl(dmin·m); chunk cc >> 6, byte cc & 31, high nibble for the chunk's upper 32
    (local.set $run (call $rowAt (call $arg (i32.const 1)) (local.get $r) (call $arg (i32.const 4)) (i32.const 128)))
    (local.set $rec (i32.add (local.get $rec) (i32.mul (i32.shr_u (local.get $c) (i32.const 8)) (i32.const 24))))
    (local.set $q (i32.load8_u (i32.add (i32.add (local.get $run) (i32.shl (i32.shr_u (local.get $c) (i32.const 8)) (i32.const 9)))
      (i32.add (i32.shl (i32.shr_u (local.get $cc) (i32.const 6)) (i32.const 5)) (i32.and (local.get $cc) (i32.const 31))))))
    (local.set $q (i32.and (i32.shr_u (local.get $q) (select (i32.const 4) (i32.const 0) (i32.and (local.get $cc) (i32.const 32)))) (i32.const 15)))
    (local.set $k (i32.shr_u (local.get $cc) (i32.const 5)))
    (return (f32.sub
      (f32.mul (f32.mul (f32.load (local.get $rec)) (f32.convert_i32_u (i32.load8_u offset=8 (i32.add (local.get $rec) (local.get $k)))))
               (f32.convert_i32_u (local.get $q)))
      (f32.mul (f32.load offset=4 (local.get $rec)) (f32.convert_i32_u (i32.load8_u offset=16 (i32.add (local.get $rec) (local.get $k))))))))
    ;; Q6_K: fl(d·sc)·(q − 32); half p = cc >> 7, l = cc & 31, quarter k = (cc >> 5) & 3: low nibble from ql[64p + l
    ;; + 32(k & 1)] (high half for k ≥ 2), 2 high bits 2k..2k+1 of qh[32p + l], scale 8p + (l >> 4) + 2k
    (local.set $run (i32.add (call $rowAt (call $arg (i32.const 1)) (local.get $r) (call $arg (i32.const 4)) (i32.const 192))
      (i32.mul (i32.shr_u (local.get $c) (i32.const 8)) (i32.const 768))))
    (local.set $rec (i32.add (local.get $rec) (i32.mul (i32.shr_u (local.get $c) (i32.const 8)) (i32.const 20))))
    (local.set $p (i32.shr_u (local.get $cc) (i32.const 7)))
    (local.set $l (i32.and (local.get $cc) (i32.const 31)))
    (local.set $k (i32.and (i32.shr_u (local.get $cc) (i32.const 5)) (i32.const 3)))
    (local.set $q (i32.load8_u (i32.add (local.get $run) (i32.add (i32.add (i32.shl (local.get $p) (i32.const 6)) (local.get $l)) (i32.shl (i32.and (local.get $k) (i32.const 1)) (i32.const 5))))))
    (local.set $q (i32.and (i32.shr_u (local.get $q) (select (i32.const 4) (i32.const 0) (i32.ge_u (local.get $k) (i32.const 2)))) (i32.const 15)))
    (local.set $h (i32.load8_u offset=128 (i32.add (local.get $run) (i32.add (i32.shl (local.get $p) (i32.const 5)) (local.get $l)))))
    (local.set $q (i32.or (local.get $q) (i32.shl (i32.and (i32.shr_u (local.get $h) (i32.shl (local.get $k) (i32.const 1))) (i32.const 3)) (i32.const 4))))
    (f32.mul
      (f32.mul (f32.load offset=16 (local.get $rec))
        (f32.convert_i32_s (i32.load8_s (i32.add (local.get $rec) (i32.add (i32.add (i32.shl (local.get $p) (i32.const 3)) (i32.shr_u (local.get $l) (i32.const 4))) (i32.shl (local.get $k) (i32.const 1)))))))
      (f32.convert_i32_s (i32.sub (local.get $q) (i32.const 32)))))

  ;; ---- activation quantization as a job: chunk c quantizes tokens c·ARG 8 .. (c+1)·ARG 8 (each token alone) ----
  ;; ARG 0 x  1 x stride (bytes)  2 T  3 cols  4 P  5 out  6 out stride (bytes)  7 format  8 tokens per chunk
  (func $quantizeChunk (param $idx i32)
    (local $t0 i32) (local $n i32)
    (local.set $t0 (i32.mul (local.get $idx) (call $arg (i32.const 8))))
    (local.set $n (i32.sub (call $arg (i32.const 2)) (local.get $t0)))
    (if (i32.gt_u (local.get $n) (call $arg (i32.const 8))) (then (local.set $n (call $arg (i32.const 8)))))
    (call $quantize
      (i32.add (call $arg (i32.const 0)) (i32.mul (local.get $t0) (call $arg (i32.const 1)))) (call $arg (i32.const 1))
      (local.get $n) (call $arg (i32.const 3)) (call $arg (i32.const 4))
      (i32.add (call $arg (i32.const 5)) (i32.mul (local.get $t0) (call $arg (i32.const 6)))) (call $arg (i32.const 6))
      (call $arg (i32.const 7))))

  ;; ---- gather: coarse sparsity's per-request copies of selected rows or columns (layout.ts) ----
  ;; ARG 0 axis (0 rows, 1 columns)  1 element bytes (2 or 4)  2 src matrix  3 dst matrix  4 rows: the
  ;;     selected source rows (i32 per output row); columns: source element offset of each kept column
  ;;     inside a row  5 columns: destination element offset of each kept column  6 rows to write (rows:
  ;;     the selected count; columns: the matrix's rows)  7 rows per chunk  8 tiles of src  9 tiles of dst
  ;;     10 columns: kept column count  11 run bytes (a multiple of 16: 64 elements of a float matrix, a
  ;;     quantized tile's quants)
  ;; rows: each output row's runs are copied whole (v128 by v128; a quantized row's scale record is copied
  ;; by the TS side). columns (float matrices only): each row's last run is zeroed
  ;; (its padding columns), then the kept elements are copied one by one. Padding rows: the TS side.
  (func $gatherChunk (param $idx i32)
    (local $i i32) (local $i1 i32) (local $eb i32) (local $run i32) (local $src i32) (local $dst i32)
    (local $s i32) (local $d i32) (local $j i32) (local $k i32) (local $n i32) (local $so i32) (local $do i32)
    (local.set $eb (call $arg (i32.const 1)))
    (local.set $run (call $arg (i32.const 11)))
    (local.set $src (call $arg (i32.const 2)))
    (local.set $dst (call $arg (i32.const 3)))
    (local.set $i (i32.mul (local.get $idx) (call $arg (i32.const 7))))
    (local.set $i1 (i32.add (local.get $i) (call $arg (i32.const 7))))
    (if (i32.gt_u (local.get $i1) (call $arg (i32.const 6))) (then (local.set $i1 (call $arg (i32.const 6)))))
    (block $end
      (loop $rows
        (br_if $end (i32.ge_u (local.get $i) (local.get $i1)))
        (if (i32.eqz (call $arg (i32.const 0)))
          (then
            ;; output row i = source row sel[i], run by run (tile j of a row is 4 runs after tile j - 1)
            (local.set $k (i32.load (i32.add (call $arg (i32.const 4)) (i32.shl (local.get $i) (i32.const 2)))))
            (local.set $s (call $rowAt (local.get $src) (local.get $k) (call $arg (i32.const 8)) (local.get $run)))
            (local.set $d (call $rowAt (local.get $dst) (local.get $i) (call $arg (i32.const 9)) (local.get $run)))
            (local.set $j (i32.const 0))
            (loop $tiles
              (local.set $k (i32.const 0))
              (loop $copy
                (v128.store (i32.add (local.get $d) (local.get $k)) (v128.load (i32.add (local.get $s) (local.get $k))))
                (local.set $k (i32.add (local.get $k) (i32.const 16)))
                (br_if $copy (i32.lt_u (local.get $k) (local.get $run))))
              (local.set $s (i32.add (local.get $s) (i32.shl (local.get $run) (i32.const 2))))
              (local.set $d (i32.add (local.get $d) (i32.shl (local.get $run) (i32.const 2))))
              (local.set $j (i32.add (local.get $j) (i32.const 1)))
              (br_if $tiles (i32.lt_u (local.get $j) (call $arg (i32.const 8))))))
          (else
            ;; row i: zero its last run, then copy the kept columns' elements
            (local.set $s (call $rowAt (local.get $src) (local.get $i) (call $arg (i32.const 8)) (local.get $run)))
            (local.set $d (call $rowAt (local.get $dst) (local.get $i) (call $arg (i32.const 9)) (local.get $run)))
            (local.set $k (i32.add (local.get $d) (i32.mul (i32.sub (call $arg (i32.const 9)) (i32.const 1)) (i32.shl (local.get $run) (i32.const 2)))))
            (local.set $j (i32.const 0))
            (loop $zero
              (v128.store (i32.add (local.get $k) (local.get $j)) (v128.const i32x4 0 0 0 0))
              (local.set $j (i32.add (local.get $j) (i32.const 16)))
              (br_if $zero (i32.lt_u (local.get $j) (local.get $run))))
            (local.set $n (call $arg (i32.const 10)))
            (local.set $so (call $arg (i32.const 4)))
            (local.set $do (call $arg (i32.const 5)))
            (local.set $j (i32.const 0))
            (if (i32.eq (local.get $eb) (i32.const 2))
              (then
                (loop $cols16
                  (i32.store16
                    (i32.add (local.get $d) (i32.shl (i32.load (i32.add (local.get $do) (i32.shl (local.get $j) (i32.const 2)))) (i32.const 1)))
                    (i32.load16_u (i32.add (local.get $s) (i32.shl (i32.load (i32.add (local.get $so) (i32.shl (local.get $j) (i32.const 2)))) (i32.const 1)))))
                  (local.set $j (i32.add (local.get $j) (i32.const 1)))
                  (br_if $cols16 (i32.lt_u (local.get $j) (local.get $n)))))
              (else
                (loop $cols32
                  (i32.store
                    (i32.add (local.get $d) (i32.shl (i32.load (i32.add (local.get $do) (i32.shl (local.get $j) (i32.const 2)))) (i32.const 2)))
                    (i32.load (i32.add (local.get $s) (i32.shl (i32.load (i32.add (local.get $so) (i32.shl (local.get $j) (i32.const 2)))) (i32.const 2)))))
                  (local.set $j (i32.add (local.get $j) (i32.const 1)))
                  (br_if $cols32 (i32.lt_u (local.get $j) (local.get $n))))))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $rows))))

  ;; Address of row r's first run in a matrix of `tiles` tiles with runs of `run` bytes (layout.ts).
  ;; @inline
  (func $rowAt (param $w i32) (param $r i32) (param $tiles i32) (param $run i32) (result i32)
    (i32.add (local.get $w) (i32.add
      (i32.mul (i32.shr_u (local.get $r) (i32.const 2)) (i32.mul (local.get $tiles) (i32.shl (local.get $run) (i32.const 2))))
      (i32.mul (i32.and (local.get $r) (i32.const 3)) (local.get $run)))))

  ;; ---- matmul (dense, or over selected rows) ----
  ;; ARG 0 dtype (0 f32, 1 bf16, 2 f16)  1 w  2 x  3 out  4 n (rows to compute, a multiple of 4)
  ;;     5 bounds: address of (chunks + 1) i32 output indices, chunk c computing outputs bounds[c] ..
  ;;       bounds[c+1] (multiples of 4)  6 tiles  7 T  8 x stride (bytes per token = tiles·256)
  ;;     9 out stride (bytes per token)  10 sel: 0 = rows 0..n-1, else address of n i32 row indices
  ;;     11 block rows (a multiple of 4)
  ;; Output i (of token t) is row i, or row sel[i]: out[t·stride + 4i].
  ;; The TS side sizes the chunks (guided: large first, smaller towards the end, so threads stream
  ;; separate regions and a late one never holds the others for long); with bounds and the out stride
  ;; multiples of 16 outputs, a chunk's outputs of a token are whole cache lines (no false sharing).
  ;; A chunk is computed in blocks of `block rows`: all T tokens of a block before the next, so a block's
  ;; weights, re-read by every pass over the tokens, stay in the core's L2.
  (func $matmulChunk (param $idx i32)
    (local $bp i32) (local $i1 i32) (local $b0 i32) (local $b1 i32) (local $rows i32)
    (local.set $bp (i32.add (call $arg (i32.const 5)) (i32.shl (local.get $idx) (i32.const 2))))
    (local.set $b0 (i32.load (local.get $bp)))
    (local.set $i1 (i32.load offset=4 (local.get $bp)))
    (local.set $rows (call $arg (i32.const 11)))
    (block $done
      (loop $blocks
        (br_if $done (i32.ge_u (local.get $b0) (local.get $i1)))
        (local.set $b1 (i32.add (local.get $b0) (local.get $rows)))
        (if (i32.gt_u (local.get $b1) (local.get $i1)) (then (local.set $b1 (local.get $i1))))
        (call $matmulBlock (local.get $b0) (local.get $b1))
        (local.set $b0 (local.get $b1))
        (br $blocks))))

  ;; Outputs i0..i1 (multiples of 4) of every token.
  (func $matmulBlock (param $i0 i32) (param $i1 i32)
    (local $dtype i32) (local $w i32) (local $x i32) (local $out i32)
    (local $tiles i32) (local $T i32) (local $xs i32) (local $os i32) (local $sel i32) (local $t i32)
    (local.set $dtype (call $arg (i32.const 0)))
    (local.set $w (call $arg (i32.const 1)))
    (local.set $x (call $arg (i32.const 2)))
    (local.set $out (call $arg (i32.const 3)))
    (local.set $tiles (call $arg (i32.const 6)))
    (local.set $T (call $arg (i32.const 7)))
    (local.set $xs (call $arg (i32.const 8)))
    (local.set $os (call $arg (i32.const 9)))
    (local.set $sel (call $arg (i32.const 10)))
    (if (i32.ge_u (local.get $dtype) (i32.const 3))
      (then (call $qBlock (local.get $i0) (local.get $i1)) (return)))
    ;; bf16 with ≥ 4 tokens: 4 tokens per pass over the block (each widened weight feeds 4 tokens)
    (if (i32.eq (local.get $dtype) (i32.const 1))
      (then
        (block $done4
          (loop $four
            (br_if $done4 (i32.gt_u (i32.add (local.get $t) (i32.const 4)) (local.get $T)))
            (call $mm4_bf16 (local.get $w)
              (i32.add (local.get $x) (i32.mul (local.get $t) (local.get $xs)))
              (i32.add (local.get $out) (i32.mul (local.get $t) (local.get $os)))
              (local.get $i0) (local.get $i1) (local.get $tiles) (local.get $sel) (local.get $xs) (local.get $os)
              (call $arg (i32.const 4)))
            (local.set $t (i32.add (local.get $t) (i32.const 4)))
            (br $four)))))
    ;; remaining tokens one at a time (the block's weights are then re-read from cache)
    (block $done
      (loop $one
        (br_if $done (i32.ge_u (local.get $t) (local.get $T)))
        (block $next
          (block $f16
            (block $bf16
              (block $f32
                (br_table $f32 $bf16 $f16 (local.get $dtype)))
              (call $mv_f32 (local.get $w)
                (i32.add (local.get $x) (i32.mul (local.get $t) (local.get $xs)))
                (i32.add (local.get $out) (i32.mul (local.get $t) (local.get $os)))
                (local.get $i0) (local.get $i1) (local.get $tiles) (local.get $sel))
              (br $next))
            (call $mv_bf16 (local.get $w)
              (i32.add (local.get $x) (i32.mul (local.get $t) (local.get $xs)))
              (i32.add (local.get $out) (i32.mul (local.get $t) (local.get $os)))
              (local.get $i0) (local.get $i1) (local.get $tiles) (local.get $sel))
            (br $next))
          (call $mv_f16 (local.get $w)
            (i32.add (local.get $x) (i32.mul (local.get $t) (local.get $xs)))
            (i32.add (local.get $out) (i32.mul (local.get $t) (local.get $os)))
            (local.get $i0) (local.get $i1) (local.get $tiles) (local.get $sel)))
        (local.set $t (i32.add (local.get $t) (i32.const 1)))
        (br $one))))

  ;; The i-th row to compute: sel[i] for a selection, else i itself.
  ;; @inline
  (func $pick (param $sel i32) (param $i i32) (result i32)
    (if (result i32) (local.get $sel)
      (then (i32.load (i32.add (local.get $sel) (i32.shl (local.get $i) (i32.const 2)))))
      (else (local.get $i))))

  ;; Address of row r's first run: 16-bit storage (runs of 128 B, group-tiles of 512 B).
  ;; @inline
  (func $row16 (param $w i32) (param $r i32) (param $tiles i32) (result i32)
    (i32.add (local.get $w) (i32.add
      (i32.mul (i32.shr_u (local.get $r) (i32.const 2)) (i32.shl (local.get $tiles) (i32.const 9)))
      (i32.shl (i32.and (local.get $r) (i32.const 3)) (i32.const 7)))))

  ;; Address of row r's first run: f32 storage (runs of 256 B, group-tiles of 1 KiB).
  ;; @inline
  (func $row32 (param $w i32) (param $r i32) (param $tiles i32) (result i32)
    (i32.add (local.get $w) (i32.add
      (i32.mul (i32.shr_u (local.get $r) (i32.const 2)) (i32.shl (local.get $tiles) (i32.const 10)))
      (i32.shl (i32.and (local.get $r) (i32.const 3)) (i32.const 8)))))

  ;; (a0 + a1) + (a2 + a3): the one final reduction of every matmul row.
  ;; @inline
  (func $finish (param $a v128) (result f32)
    (f32.add
      (f32.add (f32x4.extract_lane 0 (local.get $a)) (f32x4.extract_lane 1 (local.get $a)))
      (f32.add (f32x4.extract_lane 2 (local.get $a)) (f32x4.extract_lane 3 (local.get $a)))))

  ;; One token, outputs i0..i1 (4 at a time) of a bf16 matrix: 4 row pointers, 8 columns per step.
  ;; (Measured: a block loop inside a tile loop beats unrolling the 8 blocks, which makes V8 spill.)
  (func $mv_bf16 (param $w i32) (param $x i32) (param $out i32) (param $i0 i32) (param $i1 i32) (param $tiles i32) (param $sel i32)
    (local $i i32) (local $p0 i32) (local $p1 i32) (local $p2 i32) (local $p3 i32) (local $xp i32) (local $xend i32) (local $b i32)
    (local $o i32) (local $v v128) (local $xl v128) (local $xh v128)
    (local $a0 v128) (local $a1 v128) (local $a2 v128) (local $a3 v128)
    (local.set $xend (i32.add (local.get $x) (i32.shl (local.get $tiles) (i32.const 8))))
    (local.set $i (local.get $i0))
    (block $end
      (loop $rows
        (br_if $end (i32.ge_u (local.get $i) (local.get $i1)))
        (local.set $p0 (call $row16 (local.get $w) (call $pick (local.get $sel) (local.get $i)) (local.get $tiles)))
        (local.set $p1 (call $row16 (local.get $w) (call $pick (local.get $sel) (i32.add (local.get $i) (i32.const 1))) (local.get $tiles)))
        (local.set $p2 (call $row16 (local.get $w) (call $pick (local.get $sel) (i32.add (local.get $i) (i32.const 2))) (local.get $tiles)))
        (local.set $p3 (call $row16 (local.get $w) (call $pick (local.get $sel) (i32.add (local.get $i) (i32.const 3))) (local.get $tiles)))
        (local.set $a0 (v128.const i32x4 0 0 0 0)) (local.set $a1 (v128.const i32x4 0 0 0 0))
        (local.set $a2 (v128.const i32x4 0 0 0 0)) (local.set $a3 (v128.const i32x4 0 0 0 0))
        (local.set $xp (local.get $x))
        (loop $tile
          (local.set $b (i32.const 0))
          (loop $blocks
            (local.set $xl (v128.load (local.get $xp)))
            (local.set $xh (v128.load offset=16 (local.get $xp)))
            (local.set $v (v128.load (local.get $p0)))
            (local.set $a0 (f32x4.add (local.get $a0) (f32x4.relaxed_madd (i32x4.shl (local.get $v) (i32.const 16)) (local.get $xl)
              (f32x4.mul (v128.and (local.get $v) (v128.const i32x4 0xffff0000 0xffff0000 0xffff0000 0xffff0000)) (local.get $xh)))))
            (local.set $v (v128.load (local.get $p1)))
            (local.set $a1 (f32x4.add (local.get $a1) (f32x4.relaxed_madd (i32x4.shl (local.get $v) (i32.const 16)) (local.get $xl)
              (f32x4.mul (v128.and (local.get $v) (v128.const i32x4 0xffff0000 0xffff0000 0xffff0000 0xffff0000)) (local.get $xh)))))
            (local.set $v (v128.load (local.get $p2)))
            (local.set $a2 (f32x4.add (local.get $a2) (f32x4.relaxed_madd (i32x4.shl (local.get $v) (i32.const 16)) (local.get $xl)
              (f32x4.mul (v128.and (local.get $v) (v128.const i32x4 0xffff0000 0xffff0000 0xffff0000 0xffff0000)) (local.get $xh)))))
            (local.set $v (v128.load (local.get $p3)))
            (local.set $a3 (f32x4.add (local.get $a3) (f32x4.relaxed_madd (i32x4.shl (local.get $v) (i32.const 16)) (local.get $xl)
              (f32x4.mul (v128.and (local.get $v) (v128.const i32x4 0xffff0000 0xffff0000 0xffff0000 0xffff0000)) (local.get $xh)))))
            (local.set $p0 (i32.add (local.get $p0) (i32.const 16)))
            (local.set $p1 (i32.add (local.get $p1) (i32.const 16)))
            (local.set $p2 (i32.add (local.get $p2) (i32.const 16)))
            (local.set $p3 (i32.add (local.get $p3) (i32.const 16)))
            (local.set $xp (i32.add (local.get $xp) (i32.const 32)))
            (local.set $b (i32.add (local.get $b) (i32.const 1)))
            (br_if $blocks (i32.lt_u (local.get $b) (i32.const 8))))
          ;; next tile: skip the other 3 rows' runs
          (local.set $p0 (i32.add (local.get $p0) (i32.const 384)))
          (local.set $p1 (i32.add (local.get $p1) (i32.const 384)))
          (local.set $p2 (i32.add (local.get $p2) (i32.const 384)))
          (local.set $p3 (i32.add (local.get $p3) (i32.const 384)))
          (br_if $tile (i32.lt_u (local.get $xp) (local.get $xend))))
        (local.set $o (i32.add (local.get $out) (i32.shl (local.get $i) (i32.const 2))))
        (f32.store (local.get $o) (call $finish (local.get $a0)))
        (f32.store offset=4 (local.get $o) (call $finish (local.get $a1)))
        (f32.store offset=8 (local.get $o) (call $finish (local.get $a2)))
        (f32.store offset=12 (local.get $o) (call $finish (local.get $a3)))
        (local.set $i (i32.add (local.get $i) (i32.const 4)))
        (br $rows))))

  ;; Four tokens (x, x+xs, x+2xs, x+3xs), outputs i0..i1 of a bf16 matrix, two rows at a time: each
  ;; widened weight vector feeds 4 tokens and each x vector 2 rows. Writes out[t·os + 4i] for t < 4.
  ;; (Measured on Zen 5: 20% faster than 1 row × 4 tokens, which loads each x vector once per row;
  ;; 1 row × 8 tokens was no faster. 8 accumulators + 4 widened weights + x fill V8's 15 free xmm
  ;; registers without spilling.)
  ;; Walking 2 rows at a time reads a group in 128-byte runs 512 bytes apart, which the hardware
  ;; prefetcher serves badly from DRAM (measured: T = 4 cost 5× a decode step). So while a dense group
  ;; is computed, one load per step touches the next group (32 bytes a step × 2 row pairs × 8·tiles steps
  ;; = exactly one group), and the group is in cache when its turn comes.
  (func $mm4_bf16 (param $w i32) (param $x i32) (param $out i32) (param $i0 i32) (param $i1 i32) (param $tiles i32)
    (param $sel i32) (param $xs i32) (param $os i32) (param $n i32)
    (local $i i32) (local $p i32) (local $q i32) (local $xp i32) (local $xend i32) (local $o i32) (local $b i32)
    (local $xs2 i32) (local $xs3 i32) (local $pf i32) (local $sink i32)
    (local $v v128) (local $wl v128) (local $wh v128) (local $ul v128) (local $uh v128) (local $xl v128) (local $xh v128)
    (local $a0 v128) (local $a1 v128) (local $a2 v128) (local $a3 v128)
    (local $c0 v128) (local $c1 v128) (local $c2 v128) (local $c3 v128)
    (local.set $xs2 (i32.shl (local.get $xs) (i32.const 1)))
    (local.set $xs3 (i32.add (local.get $xs2) (local.get $xs)))
    (local.set $xend (i32.add (local.get $x) (i32.shl (local.get $tiles) (i32.const 8))))
    (local.set $i (local.get $i0))
    (block $end
      (loop $rows
        (br_if $end (i32.ge_u (local.get $i) (local.get $i1)))
        (local.set $p (call $row16 (local.get $w) (call $pick (local.get $sel) (local.get $i)) (local.get $tiles)))
        (local.set $q (call $row16 (local.get $w) (call $pick (local.get $sel) (i32.add (local.get $i) (i32.const 1))) (local.get $tiles)))
        ;; prefetch target: at a dense group's first row, the next group (or this one, at the matrix end);
        ;; a selection touches its own rows
        (if (i32.eqz (local.get $sel))
          (then
            (if (i32.eqz (i32.and (local.get $i) (i32.const 3)))
              (then (local.set $pf (call $row16 (local.get $w)
                (select (i32.add (local.get $i) (i32.const 4)) (local.get $i) (i32.lt_u (i32.add (local.get $i) (i32.const 4)) (local.get $n)))
                (local.get $tiles))))))
          (else (local.set $pf (local.get $p))))
        (local.set $a0 (v128.const i32x4 0 0 0 0)) (local.set $a1 (v128.const i32x4 0 0 0 0))
        (local.set $a2 (v128.const i32x4 0 0 0 0)) (local.set $a3 (v128.const i32x4 0 0 0 0))
        (local.set $c0 (v128.const i32x4 0 0 0 0)) (local.set $c1 (v128.const i32x4 0 0 0 0))
        (local.set $c2 (v128.const i32x4 0 0 0 0)) (local.set $c3 (v128.const i32x4 0 0 0 0))
        (local.set $xp (local.get $x))
        (loop $tile
          (local.set $b (i32.const 0))
          (loop $blocks
            (local.set $sink (i32.or (local.get $sink) (i32.load (local.get $pf))))
            (local.set $pf (i32.add (local.get $pf) (i32.const 32)))
            (local.set $v (v128.load (local.get $p)))
            (local.set $wl (i32x4.shl (local.get $v) (i32.const 16)))
            (local.set $wh (v128.and (local.get $v) (v128.const i32x4 0xffff0000 0xffff0000 0xffff0000 0xffff0000)))
            (local.set $v (v128.load (local.get $q)))
            (local.set $ul (i32x4.shl (local.get $v) (i32.const 16)))
            (local.set $uh (v128.and (local.get $v) (v128.const i32x4 0xffff0000 0xffff0000 0xffff0000 0xffff0000)))
            (local.set $xl (v128.load (local.get $xp)))
            (local.set $xh (v128.load offset=16 (local.get $xp)))
            (local.set $a0 (f32x4.add (local.get $a0) (f32x4.relaxed_madd (local.get $wl) (local.get $xl) (f32x4.mul (local.get $wh) (local.get $xh)))))
            (local.set $c0 (f32x4.add (local.get $c0) (f32x4.relaxed_madd (local.get $ul) (local.get $xl) (f32x4.mul (local.get $uh) (local.get $xh)))))
            (local.set $xl (v128.load (i32.add (local.get $xp) (local.get $xs))))
            (local.set $xh (v128.load offset=16 (i32.add (local.get $xp) (local.get $xs))))
            (local.set $a1 (f32x4.add (local.get $a1) (f32x4.relaxed_madd (local.get $wl) (local.get $xl) (f32x4.mul (local.get $wh) (local.get $xh)))))
            (local.set $c1 (f32x4.add (local.get $c1) (f32x4.relaxed_madd (local.get $ul) (local.get $xl) (f32x4.mul (local.get $uh) (local.get $xh)))))
            (local.set $xl (v128.load (i32.add (local.get $xp) (local.get $xs2))))
            (local.set $xh (v128.load offset=16 (i32.add (local.get $xp) (local.get $xs2))))
            (local.set $a2 (f32x4.add (local.get $a2) (f32x4.relaxed_madd (local.get $wl) (local.get $xl) (f32x4.mul (local.get $wh) (local.get $xh)))))
            (local.set $c2 (f32x4.add (local.get $c2) (f32x4.relaxed_madd (local.get $ul) (local.get $xl) (f32x4.mul (local.get $uh) (local.get $xh)))))
            (local.set $xl (v128.load (i32.add (local.get $xp) (local.get $xs3))))
            (local.set $xh (v128.load offset=16 (i32.add (local.get $xp) (local.get $xs3))))
            (local.set $a3 (f32x4.add (local.get $a3) (f32x4.relaxed_madd (local.get $wl) (local.get $xl) (f32x4.mul (local.get $wh) (local.get $xh)))))
            (local.set $c3 (f32x4.add (local.get $c3) (f32x4.relaxed_madd (local.get $ul) (local.get $xl) (f32x4.mul (local.get $uh) (local.get $xh)))))
            (local.set $p (i32.add (local.get $p) (i32.const 16)))
            (local.set $q (i32.add (local.get $q) (i32.const 16)))
            (local.set $xp (i32.add (local.get $xp) (i32.const 32)))
            (local.set $b (i32.add (local.get $b) (i32.const 1)))
            (br_if $blocks (i32.lt_u (local.get $b) (i32.const 8))))
          (local.set $p (i32.add (local.get $p) (i32.const 384)))
          (local.set $q (i32.add (local.get $q) (i32.const 384)))
          (br_if $tile (i32.lt_u (local.get $xp) (local.get $xend))))
        (local.set $o (i32.add (local.get $out) (i32.shl (local.get $i) (i32.const 2))))
        ;; row i's token t at out + t·os + 4i, row i+1's just after
        (f32.store (local.get $o) (call $finish (local.get $a0)))
        (f32.store offset=4 (local.get $o) (call $finish (local.get $c0)))
        (local.set $o (i32.add (local.get $o) (local.get $os)))
        (f32.store (local.get $o) (call $finish (local.get $a1)))
        (f32.store offset=4 (local.get $o) (call $finish (local.get $c1)))
        (local.set $o (i32.add (local.get $o) (local.get $os)))
        (f32.store (local.get $o) (call $finish (local.get $a2)))
        (f32.store offset=4 (local.get $o) (call $finish (local.get $c2)))
        (local.set $o (i32.add (local.get $o) (local.get $os)))
        (f32.store (local.get $o) (call $finish (local.get $a3)))
        (f32.store offset=4 (local.get $o) (call $finish (local.get $c3)))
        (local.set $i (i32.add (local.get $i) (i32.const 2)))
        (br $rows)))
    ;; keep the prefetching loads observable (a spare control-block word nobody reads)
    (i32.store (i32.const 1020) (local.get $sink)))

  ;; One token, outputs i0..i1 (4 at a time) of an f32 matrix (row-blocks of 32 B, runs of 256 B).
  (func $mv_f32 (param $w i32) (param $x i32) (param $out i32) (param $i0 i32) (param $i1 i32) (param $tiles i32) (param $sel i32)
    (local $i i32) (local $p0 i32) (local $p1 i32) (local $p2 i32) (local $p3 i32) (local $xp i32) (local $xend i32) (local $b i32)
    (local $o i32) (local $xl v128) (local $xh v128)
    (local $a0 v128) (local $a1 v128) (local $a2 v128) (local $a3 v128)
    (local.set $xend (i32.add (local.get $x) (i32.shl (local.get $tiles) (i32.const 8))))
    (local.set $i (local.get $i0))
    (block $end
      (loop $rows
        (br_if $end (i32.ge_u (local.get $i) (local.get $i1)))
        (local.set $p0 (call $row32 (local.get $w) (call $pick (local.get $sel) (local.get $i)) (local.get $tiles)))
        (local.set $p1 (call $row32 (local.get $w) (call $pick (local.get $sel) (i32.add (local.get $i) (i32.const 1))) (local.get $tiles)))
        (local.set $p2 (call $row32 (local.get $w) (call $pick (local.get $sel) (i32.add (local.get $i) (i32.const 2))) (local.get $tiles)))
        (local.set $p3 (call $row32 (local.get $w) (call $pick (local.get $sel) (i32.add (local.get $i) (i32.const 3))) (local.get $tiles)))
        (local.set $a0 (v128.const i32x4 0 0 0 0)) (local.set $a1 (v128.const i32x4 0 0 0 0))
        (local.set $a2 (v128.const i32x4 0 0 0 0)) (local.set $a3 (v128.const i32x4 0 0 0 0))
        (local.set $xp (local.get $x))
        (loop $tile
          (local.set $b (i32.const 0))
          (loop $blocks
            (local.set $xl (v128.load (local.get $xp)))
            (local.set $xh (v128.load offset=16 (local.get $xp)))
            (local.set $a0 (f32x4.add (local.get $a0)
              (f32x4.relaxed_madd (v128.load (local.get $p0)) (local.get $xl) (f32x4.mul (v128.load offset=16 (local.get $p0)) (local.get $xh)))))
            (local.set $a1 (f32x4.add (local.get $a1)
              (f32x4.relaxed_madd (v128.load (local.get $p1)) (local.get $xl) (f32x4.mul (v128.load offset=16 (local.get $p1)) (local.get $xh)))))
            (local.set $a2 (f32x4.add (local.get $a2)
              (f32x4.relaxed_madd (v128.load (local.get $p2)) (local.get $xl) (f32x4.mul (v128.load offset=16 (local.get $p2)) (local.get $xh)))))
            (local.set $a3 (f32x4.add (local.get $a3)
              (f32x4.relaxed_madd (v128.load (local.get $p3)) (local.get $xl) (f32x4.mul (v128.load offset=16 (local.get $p3)) (local.get $xh)))))
            (local.set $p0 (i32.add (local.get $p0) (i32.const 32)))
            (local.set $p1 (i32.add (local.get $p1) (i32.const 32)))
            (local.set $p2 (i32.add (local.get $p2) (i32.const 32)))
            (local.set $p3 (i32.add (local.get $p3) (i32.const 32)))
            (local.set $xp (i32.add (local.get $xp) (i32.const 32)))
            (local.set $b (i32.add (local.get $b) (i32.const 1)))
            (br_if $blocks (i32.lt_u (local.get $b) (i32.const 8))))
          (local.set $p0 (i32.add (local.get $p0) (i32.const 768)))
          (local.set $p1 (i32.add (local.get $p1) (i32.const 768)))
          (local.set $p2 (i32.add (local.get $p2) (i32.const 768)))
          (local.set $p3 (i32.add (local.get $p3) (i32.const 768)))
          (br_if $tile (i32.lt_u (local.get $xp) (local.get $xend))))
        (local.set $o (i32.add (local.get $out) (i32.shl (local.get $i) (i32.const 2))))
        (f32.store (local.get $o) (call $finish (local.get $a0)))
        (f32.store offset=4 (local.get $o) (call $finish (local.get $a1)))
        (f32.store offset=8 (local.get $o) (call $finish (local.get $a2)))
        (f32.store offset=12 (local.get $o) (call $finish (local.get $a3)))
        (local.set $i (i32.add (local.get $i) (i32.const 4)))
        (br $rows))))

  ;; IEEE half → f32 for the half in the HIGH 16 bits of each i32 lane (low bits ignored), exact, and
  ;; never computing on an f32 subnormal (each such multiply takes a microcode assist, see $h2f): the 15
  ;; magnitude bits moved to the f32 position (>> 3) and rebiased by an integer add (exponent 31 twice, to
  ;; 255); an f16 subnormal lane is its mantissa converted and scaled by 2⁻³⁷ (= 2⁻²⁴ per mantissa unit,
  ;; exact, normal); sign copied.
  ;; @inline
  (func $f16hi (param $t v128) (result v128)
    (local $m v128)
    (local.set $m (i32x4.shr_u (v128.and (local.get $t) (v128.load offset=48 (i32.const 4096))) (i32.const 3)))
    (v128.or
      (v128.bitselect
        (i32x4.add (i32x4.add (local.get $m) (v128.load offset=64 (i32.const 4096)))
                   (v128.and (i32x4.gt_s (local.get $m) (v128.load offset=80 (i32.const 4096))) (v128.load offset=64 (i32.const 4096))))
        (f32x4.mul (f32x4.convert_i32x4_s (local.get $m)) (v128.load offset=128 (i32.const 4096)))
        (i32x4.gt_s (local.get $m) (v128.load offset=96 (i32.const 4096))))
      (v128.and (local.get $t) (v128.load offset=112 (i32.const 4096)))))

  ;; $f16hi by the multiply trick: the magnitude bits moved to the f32 position and scaled by 2¹¹² (exact for
  ;; every half, subnormals included, inf/NaN forced to exponent 255), five instructions fewer than $f16hi
  ;; but a microcode assist for every f16 subnormal (an f32 subnormal input). Only for Q4_0 block scales,
  ;; which are subnormal only in blocks whose weights all stay below ≈ 0.0005, so that kernel keeps the
  ;; instructions it had (simd/README.md).
  ;; @inline
  (func $f16hiScale (param $t v128) (result v128)
    (local $m v128)
    (local.set $m (i32x4.shr_u (v128.and (local.get $t) (v128.load offset=48 (i32.const 4096))) (i32.const 3)))
    (v128.or
      (v128.or
        (f32x4.mul (local.get $m) (v128.load offset=272 (i32.const 4096)))
        (v128.and (i32x4.ge_u (local.get $m) (v128.load offset=288 (i32.const 4096)))
                  (v128.load offset=304 (i32.const 4096))))
      (v128.and (local.get $t) (v128.load offset=112 (i32.const 4096)))))

  ;; One token, outputs i0..i1 of an f16 matrix (layout as bf16), one row at a time. Correct, not the
  ;; fast path: the widening is a call (V8 does not inline wasm calls), twice per 8 weights.
  (func $mv_f16 (param $w i32) (param $x i32) (param $out i32) (param $i0 i32) (param $i1 i32) (param $tiles i32) (param $sel i32)
    (local $i i32) (local $p i32) (local $xp i32) (local $xend i32) (local $b i32)
    (local $v v128) (local $a v128)
    (local.set $xend (i32.add (local.get $x) (i32.shl (local.get $tiles) (i32.const 8))))
    (local.set $i (local.get $i0))
    (block $end
      (loop $rows
        (br_if $end (i32.ge_u (local.get $i) (local.get $i1)))
        (local.set $p (call $row16 (local.get $w) (call $pick (local.get $sel) (local.get $i)) (local.get $tiles)))
        (local.set $a (v128.const i32x4 0 0 0 0))
        (local.set $xp (local.get $x))
        (loop $tile
          (local.set $b (i32.const 0))
          (loop $blocks
            (local.set $v (v128.load (local.get $p)))
            (local.set $a (f32x4.add (local.get $a) (f32x4.relaxed_madd
              (call $f16hi (i32x4.shl (local.get $v) (i32.const 16))) (v128.load (local.get $xp))
              (f32x4.mul (call $f16hi (local.get $v)) (v128.load offset=16 (local.get $xp))))))
            (local.set $p (i32.add (local.get $p) (i32.const 16)))
            (local.set $xp (i32.add (local.get $xp) (i32.const 32)))
            (local.set $b (i32.add (local.get $b) (i32.const 1)))
            (br_if $blocks (i32.lt_u (local.get $b) (i32.const 8))))
          (local.set $p (i32.add (local.get $p) (i32.const 384)))
          (br_if $tile (i32.lt_u (local.get $xp) (local.get $xend))))
        (f32.store (i32.add (local.get $out) (i32.shl (local.get $i) (i32.const 2))) (call $finish (local.get $a)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $rows))))

  ;; ==== quantized weights (Q8_0, Q4_0, Q4_K, Q6_K) on integer dot products ====
  ;;
  ;; Weight layout (layout.ts): the float layout's groups of 4 rows, with column tiles of 256 (one K-quant
  ;; super-block, eight Q8_0/Q4_0 blocks); row r's RUN of a tile holds its quants only, in ggml's own byte
  ;; order: Q8_0 256 B (i8 codes), Q4_0 128 B (each block's 16 bytes: low nibbles columns 0..15, high
  ;; nibbles 16..31), Q4_K 128 B (ggml `qs`: bytes l of 32-byte chunk c hold column 64c + l in the low
  ;; nibble and 64c + 32 + l in the high one), Q6_K 192 B (ggml `ql` then `qh`). The scales live apart, one
  ;; record per row (row r's at scales + r·record bytes), per tile: Q8_0 8 × f32 d; Q4_0 8 × f16 d; Q4_K
  ;; f32 d, f32 dmin, u8 sc[8], u8 m[8] (ggml's 6-bit packing undone at load); Q6_K i8 sc[16], f32 d (the
  ;; f32 scales are the file's f16 widened exactly at load).
  ;;
  ;; Activations are quantized per matmul input first (`quantize`), as llama.cpp's CPU path does
  ;; (ggml-cpu `vec_dot_type`): Q8_0 blocks of 32 for Q8_0/Q4_0 weights, Q8_K blocks of 256 with block
  ;; sums for the K-quants. One record per token (P = tiles·256 padded columns; zero past the columns):
  ;;   A16 (Q8_0 weights)  i16 q[P] · f32 d[P/32]
  ;;   A8  (Q4_0 weights)  i8 q[P] · f32 d[P/32] · i32 8·Σq[P/32]
  ;;   AK  (Q4_K, Q6_K)    i8 q[P] · f32 d[P/256] · i16 Σq per 16 [P/16] · i16 Σq per 32 [P/32]
  ;;
  ;; Integer dot products: `i16x8.relaxed_dot_i8x16_i7x16_s` (pmaddubsw on x64 without VNNI) takes the
  ;; signed activation codes first and the unsigned weight codes (0..15 or 0..63, inside its 0..127
  ;; second-operand range) second; the pairs it yields are multiplied by the sub-block scale (or by 1)
  ;; with `i32x4.dot_i16x8_s` (pmaddwd), which folds the K-quant scales into the reduction at no cost.
  ;; (`i32x4.relaxed_dot_i8x16_i7x16_add_s` would be one instruction with AVX-VNNI, but without it V8
  ;; lowers it to pmaddubsw + pmaddwd against an all-ones constant it rematerialises on every use:
  ;; measured 20% slower here.) Offsets are corrected with the activation block sums: Q4_0's −8
  ;; (8·Σq, subtracted in lane 0), Q4_K's mins (Σ m_j·Σq_j), Q6_K's −32 (32·Σ sc_j·Σq_j). Q8_0 weights
  ;; are signed on both sides, outside the i7 range: they take the plain path, both sides widened to
  ;; i16 and multiplied with `i32x4.dot_i16x8_s` (measured as fast as the relaxed path with llama.cpp's
  ;; sign transfer, and exact for a −128 code). No integer sum overflows i32 (bounds in each kernel).
  ;;
  ;; Reduction order, the same in every kernel, so a row's result depends neither on T, nor on the kernel
  ;; that ran it, nor on the thread: per (row, token) one f32x4 accumulator; per block in column order its
  ;; exact i32x4 integer sum s (lane k: the products of its columns ≡ 4k..4k+3 mod 16 within each 16-column
  ;; vector), then acc = madd(f32(s), splat(d_w·d_x), acc) (Q4_K: then acc = madd(f32(Σm·Σq), splat(−dmin_w·d_x), acc));
  ;; result = (a0 + a1) + (a2 + a3). Integer sums are exact in any order; what rounds is fixed per element.

  ;; Constants the quantized kernels and $f16hi read from memory at 4096 (layout.ts CONSTANTS, written by
  ;; SimdRuntime): +0 i8x16 15, +16 i8x16 48, +32 i16x8 1, +48 0x7fff0000, +64 0x38000000, +80 0x0f7fffff,
  ;; +96 0x007fffff, +112 0x80000000 (i32x4), +128 f32 2⁻³⁷, +144 + 16j (j = 0..7) the i8x16 swizzle that
  ;; splats i16 lane j, +272 f32 2¹¹², +288 0x0f800000, +304 0x7f800000. V8 rebuilds a non-trivial
  ;; v128.const in every loop iteration (three instructions each); a load from a fixed address folds into the
  ;; instruction that uses it.

  ;; f16 bits → f32, exact (normal, subnormal, inf, NaN), without ever computing on an f32 subnormal: the
  ;; magnitude bits moved to the f32 position and rebiased by an integer add (exponent 31 rebiased twice, to
  ;; 255); an f16 subnormal is its 10-bit mantissa converted and scaled by 2⁻²⁴ (exact, normal). The former
  ;; `× 2¹¹²` trick multiplied an f32 subnormal for every f16 subnormal, and Q6_K super-block scales are
  ;; f16 subnormals in most blocks of a trained model: each such multiply took a microcode assist
  ;; (simd/README.md).
  ;; @inline
  (func $h2f (param $h i32) (result f32)
    (local $m i32)
    (local.set $m (i32.and (local.get $h) (i32.const 0x7fff)))
    (f32.reinterpret_i32 (i32.or
      (select
        (i32.add (i32.add (i32.shl (local.get $m) (i32.const 13)) (i32.const 0x38000000))
                 (select (i32.const 0x38000000) (i32.const 0) (i32.ge_u (local.get $m) (i32.const 0x7c00))))
        (i32.reinterpret_f32 (f32.mul (f32.convert_i32_u (local.get $m)) (f32.const 0x1p-24)))
        (i32.ge_u (local.get $m) (i32.const 0x400)))
      (i32.shl (i32.and (local.get $h) (i32.const 0x8000)) (i32.const 16)))))

  ;; v ≥ 0 rounded to the nearest f16 value (ties to even), as f32: ggml's FP32_TO_FP16 of a block scale.
  (func $f16round (param $v f32) (result f32)
    (local $b i32)
    (if (f32.ge (local.get $v) (f32.const 65520)) (then (return (f32.const inf))))
    ;; below 2⁻¹⁴ the f16 grid is the multiples of 2⁻²⁴
    (if (f32.lt (local.get $v) (f32.const 0x1p-14))
      (then (return (f32.mul (f32.nearest (f32.mul (local.get $v) (f32.const 0x1p24))) (f32.const 0x1p-24)))))
    (local.set $b (i32.reinterpret_f32 (local.get $v)))
    (f32.reinterpret_i32 (i32.and
      (i32.add (i32.add (local.get $b) (i32.const 0xfff)) (i32.and (i32.shr_u (local.get $b) (i32.const 13)) (i32.const 1)))
      (i32.const 0xffffe000))))

  ;; (a0 + a1) + (a2 + a3) of an i32x4 (a block sum, exact).
  ;; @inline
  (func $isum (param $a v128) (result i32)
    (i32.add
      (i32.add (i32x4.extract_lane 0 (local.get $a)) (i32x4.extract_lane 1 (local.get $a)))
      (i32.add (i32x4.extract_lane 2 (local.get $a)) (i32x4.extract_lane 3 (local.get $a)))))

  ;; Quantize T rows of f32 activations (row t at x + t·xs bytes, `cols` valid columns, a multiple of the
  ;; block) into records at out + t·os (layouts above), zero from `cols` to P. Main thread, once per matmul
  ;; input. fmt 0: A16, 1: A8 (both llama.cpp's x86 quantize_row_q8_0: d = fp16(amax/127), q =
  ;; round-half-even(x·(127/amax))), 2: AK (quantize_row_q8_K_ref: max = the first largest-magnitude value,
  ;; iscale = −127/max, q = min(127, nearest(iscale·x)), d = 1/iscale, f32).
  (func $quantize (export "quantize") (param $x i32) (param $xs i32) (param $T i32) (param $cols i32) (param $P i32)
    (param $out i32) (param $os i32) (param $fmt i32)
    (local $t i32) (local $row i32) (local $rec i32) (local $b i32) (local $nb i32) (local $j i32) (local $k i32) (local $src i32)
    (local $amax f32) (local $max f32) (local $id f32) (local $d f32) (local $s i32)
    (local $v v128) (local $m v128) (local $q0 v128) (local $q1 v128) (local $q2 v128) (local $q3 v128) (local $acc v128)
    (block $tokens (loop $token
      (br_if $tokens (i32.ge_u (local.get $t) (local.get $T)))
      (local.set $row (i32.add (local.get $x) (i32.mul (local.get $t) (local.get $xs))))
      (local.set $rec (i32.add (local.get $out) (i32.mul (local.get $t) (local.get $os))))
      (memory.fill (local.get $rec) (i32.const 0) (local.get $os))
      (if (i32.lt_u (local.get $fmt) (i32.const 2))
        (then
          ;; Q8_0 blocks of 32
          (local.set $nb (i32.shr_u (local.get $cols) (i32.const 5)))
          (local.set $b (i32.const 0))
          (block $blocksDone (loop $blocks
            (br_if $blocksDone (i32.ge_u (local.get $b) (local.get $nb)))
            (local.set $src (i32.add (local.get $row) (i32.shl (local.get $b) (i32.const 7))))
            (local.set $m (v128.const i32x4 0 0 0 0))
            (local.set $k (i32.const 0))
            (loop $amaxLoop
              (local.set $m (f32x4.max (local.get $m) (f32x4.abs (v128.load (i32.add (local.get $src) (local.get $k))))))
              (local.set $k (i32.add (local.get $k) (i32.const 16)))
              (br_if $amaxLoop (i32.lt_u (local.get $k) (i32.const 128))))
            (local.set $amax (f32.max
              (f32.max (f32x4.extract_lane 0 (local.get $m)) (f32x4.extract_lane 1 (local.get $m)))
              (f32.max (f32x4.extract_lane 2 (local.get $m)) (f32x4.extract_lane 3 (local.get $m)))))
            (local.set $d (call $f16round (f32.div (local.get $amax) (f32.const 127))))
            (local.set $id (select (f32.div (f32.const 127) (local.get $amax)) (f32.const 0) (f32.ne (local.get $amax) (f32.const 0))))
            (local.set $acc (v128.const i32x4 0 0 0 0))
            ;; 8 columns per step: two i32x4 → one i16x8
            (local.set $k (i32.const 0))
            (loop $eights
              (local.set $q0 (i32x4.trunc_sat_f32x4_s (f32x4.nearest (f32x4.mul (v128.load (i32.add (local.get $src) (i32.shl (local.get $k) (i32.const 2)))) (f32x4.splat (local.get $id))))))
              (local.set $q1 (i32x4.trunc_sat_f32x4_s (f32x4.nearest (f32x4.mul (v128.load offset=16 (i32.add (local.get $src) (i32.shl (local.get $k) (i32.const 2)))) (f32x4.splat (local.get $id))))))
              (local.set $acc (i32x4.add (local.get $acc) (i32x4.add (local.get $q0) (local.get $q1))))
              (local.set $v (i16x8.narrow_i32x4_s (local.get $q0) (local.get $q1)))
              (if (i32.eqz (local.get $fmt))
                (then (v128.store (i32.add (local.get $rec) (i32.shl (i32.add (i32.shl (local.get $b) (i32.const 5)) (local.get $k)) (i32.const 1))) (local.get $v)))
                (else (v128.store64_lane 0 (i32.add (local.get $rec) (i32.add (i32.shl (local.get $b) (i32.const 5)) (local.get $k)))
                  (i8x16.narrow_i16x8_s (local.get $v) (local.get $v)))))
              (local.set $k (i32.add (local.get $k) (i32.const 8)))
              (br_if $eights (i32.lt_u (local.get $k) (i32.const 32))))
            (if (i32.eqz (local.get $fmt))
              (then (f32.store (i32.add (i32.add (local.get $rec) (i32.shl (local.get $P) (i32.const 1))) (i32.shl (local.get $b) (i32.const 2))) (local.get $d)))
              (else
                (f32.store (i32.add (i32.add (local.get $rec) (local.get $P)) (i32.shl (local.get $b) (i32.const 2))) (local.get $d))
                (i32.store (i32.add (i32.add (local.get $rec) (i32.add (local.get $P) (i32.shr_u (local.get $P) (i32.const 3)))) (i32.shl (local.get $b) (i32.const 2)))
                  (i32.shl (call $isum (local.get $acc)) (i32.const 3)))))
            (local.set $b (i32.add (local.get $b) (i32.const 1)))
            (br $blocks))))
        (else
          ;; Q8_K super-blocks of 256
          (local.set $nb (i32.shr_u (local.get $cols) (i32.const 8)))
          (local.set $b (i32.const 0))
          (block $superDone (loop $supers
            (br_if $superDone (i32.ge_u (local.get $b) (local.get $nb)))
            (local.set $src (i32.add (local.get $row) (i32.shl (local.get $b) (i32.const 10))))
            (local.set $m (v128.const i32x4 0 0 0 0))
            (local.set $k (i32.const 0))
            (loop $amaxLoop
              (local.set $m (f32x4.max (local.get $m) (f32x4.abs (v128.load (i32.add (local.get $src) (local.get $k))))))
              (local.set $k (i32.add (local.get $k) (i32.const 16)))
              (br_if $amaxLoop (i32.lt_u (local.get $k) (i32.const 1024))))
            (local.set $amax (f32.max
              (f32.max (f32x4.extract_lane 0 (local.get $m)) (f32x4.extract_lane 1 (local.get $m)))
              (f32.max (f32x4.extract_lane 2 (local.get $m)) (f32x4.extract_lane 3 (local.get $m)))))
            (if (f32.ne (local.get $amax) (f32.const 0))
              (then
                ;; the signed value of the first element of largest magnitude: the first 4 lanes holding it,
                ;; then the lowest such lane
                (local.set $k (i32.const 0))
                (loop $first
                  (local.set $j (i32x4.bitmask (f32x4.eq (f32x4.abs (v128.load (i32.add (local.get $src) (local.get $k)))) (f32x4.splat (local.get $amax)))))
                  (local.set $k (i32.add (local.get $k) (i32.const 16)))
                  (br_if $first (i32.eqz (local.get $j))))
                (local.set $max (f32.load (i32.add (i32.add (local.get $src) (i32.sub (local.get $k) (i32.const 16))) (i32.shl (i32.ctz (local.get $j)) (i32.const 2)))))
                (local.set $id (f32.div (f32.const -127) (local.get $max)))
                (local.set $d (f32.div (f32.const 1) (local.get $id)))
                (f32.store (i32.add (i32.add (local.get $rec) (local.get $P)) (i32.shl (local.get $b) (i32.const 2))) (local.get $d))
                ;; 16 columns per step: four i32x4 → 16 bytes, and their sum (a Σq per 16)
                (local.set $j (i32.const 0))
                (loop $sixteens
                  (local.set $k (i32.add (local.get $src) (i32.shl (local.get $j) (i32.const 6))))
                  (local.set $q0 (i32x4.min_s (i32x4.trunc_sat_f32x4_s (f32x4.nearest (f32x4.mul (v128.load (local.get $k)) (f32x4.splat (local.get $id))))) (v128.const i32x4 127 127 127 127)))
                  (local.set $q1 (i32x4.min_s (i32x4.trunc_sat_f32x4_s (f32x4.nearest (f32x4.mul (v128.load offset=16 (local.get $k)) (f32x4.splat (local.get $id))))) (v128.const i32x4 127 127 127 127)))
                  (local.set $q2 (i32x4.min_s (i32x4.trunc_sat_f32x4_s (f32x4.nearest (f32x4.mul (v128.load offset=32 (local.get $k)) (f32x4.splat (local.get $id))))) (v128.const i32x4 127 127 127 127)))
                  (local.set $q3 (i32x4.min_s (i32x4.trunc_sat_f32x4_s (f32x4.nearest (f32x4.mul (v128.load offset=48 (local.get $k)) (f32x4.splat (local.get $id))))) (v128.const i32x4 127 127 127 127)))
                  (v128.store (i32.add (local.get $rec) (i32.add (i32.shl (local.get $b) (i32.const 8)) (i32.shl (local.get $j) (i32.const 4))))
                    (i8x16.narrow_i16x8_s (i16x8.narrow_i32x4_s (local.get $q0) (local.get $q1)) (i16x8.narrow_i32x4_s (local.get $q2) (local.get $q3))))
                  (local.set $s (call $isum (i32x4.add (i32x4.add (local.get $q0) (local.get $q1)) (i32x4.add (local.get $q2) (local.get $q3)))))
                  ;; Σq per 16 at P + P/64 + 2·(16b + j); per 32 at P + P/64 + P/8 + 2·(8b + j/2)
                  (local.set $k (i32.add (local.get $rec) (i32.add (local.get $P) (i32.shr_u (local.get $P) (i32.const 6)))))
                  (i32.store16 (i32.add (local.get $k) (i32.shl (i32.add (i32.shl (local.get $b) (i32.const 4)) (local.get $j)) (i32.const 1))) (local.get $s))
                  (local.set $k (i32.add (i32.add (local.get $k) (i32.shr_u (local.get $P) (i32.const 3)))
                    (i32.shl (i32.add (i32.shl (local.get $b) (i32.const 3)) (i32.shr_u (local.get $j) (i32.const 1))) (i32.const 1))))
                  (i32.store16 (local.get $k) (i32.add (i32.load16_s (local.get $k)) (local.get $s)))
                  (local.set $j (i32.add (local.get $j) (i32.const 1)))
                  (br_if $sixteens (i32.lt_u (local.get $j) (i32.const 16))))))
            (local.set $b (i32.add (local.get $b) (i32.const 1)))
            (br $supers)))))
      (local.set $t (i32.add (local.get $t) (i32.const 1)))
      (br $token))))

  ;; The f16 block scales at s0..s3 (one per row; Q4_0) widened exactly and multiplied by d_x: f32x4 lane r =
  ;; fl(d_r · d_x), the same product $h2f · d_x gives one row at a time.
  ;; @inline
  (func $scales4 (param $s0 i32) (param $s1 i32) (param $s2 i32) (param $s3 i32) (param $dx f32) (result v128)
    (f32x4.mul
      (call $f16hiScale (i32x4.shl (i32x4.extend_low_i16x8_u
        (v128.load16_lane 3 (local.get $s3) (v128.load16_lane 2 (local.get $s2) (v128.load16_lane 1 (local.get $s1) (v128.load16_lane 0 (local.get $s0) (v128.const i32x4 0 0 0 0)))))) (i32.const 16)))
      (f32x4.splat (local.get $dx))))

  ;; Q8_0 block dot (plain path): the 32 i8 codes at p widened to i16 against 32 i16 activations, as an
  ;; i32x4 (lane k: columns 2k, 2k+1 of each 8). |lane| ≤ 4 · 2 · 128 · 127 < 2³¹.
  ;; @inline
  (func $q8dot (param $p i32) (param $x0 v128) (param $x1 v128) (param $x2 v128) (param $x3 v128) (result v128)
    (i32x4.add
      (i32x4.add (i32x4.dot_i16x8_s (v128.load8x8_s (local.get $p)) (local.get $x0))
                 (i32x4.dot_i16x8_s (v128.load8x8_s offset=8 (local.get $p)) (local.get $x1)))
      (i32x4.add (i32x4.dot_i16x8_s (v128.load8x8_s offset=16 (local.get $p)) (local.get $x2))
                 (i32x4.dot_i16x8_s (v128.load8x8_s offset=24 (local.get $p)) (local.get $x3)))))

  ;; Q8_0, one token (A16 record at x), outputs i0..i1, 4 rows per pass (each activation vector feeds 4 rows).
  ;; Per block of 32: acc_r = madd(f32(q8dot), splat(d_r)·splat(d_x), acc_r): each f32 d_r (Q8_0 records hold
  ;; the scales widened at load) is one splatting load; the product is the one the 4-token kernel makes.
  (func $mv_q8 (param $w i32) (param $sc i32) (param $srow i32) (param $x i32) (param $out i32) (param $i0 i32) (param $i1 i32)
    (param $tiles i32) (param $sel i32)
    (local $i i32) (local $r i32) (local $p0 i32) (local $p1 i32) (local $p2 i32) (local $p3 i32)
    (local $s0 i32) (local $s1 i32) (local $s2 i32) (local $s3 i32)
    (local $xp i32) (local $dp i32) (local $xend i32) (local $b i32) (local $o i32)
    (local $x0 v128) (local $x1 v128) (local $x2 v128) (local $x3 v128) (local $d v128)
    (local $a0 v128) (local $a1 v128) (local $a2 v128) (local $a3 v128)
    ;; 256 i16 activations per tile, then the f32 block scales
    (local.set $xend (i32.add (local.get $x) (i32.shl (local.get $tiles) (i32.const 9))))
    (local.set $i (local.get $i0))
    (block $end
      (loop $rows
        (br_if $end (i32.ge_u (local.get $i) (local.get $i1)))
        (local.set $r (call $pick (local.get $sel) (local.get $i)))
        (local.set $p0 (call $rowAt (local.get $w) (local.get $r) (local.get $tiles) (i32.const 256)))
        (local.set $s0 (i32.add (local.get $sc) (i32.mul (local.get $r) (local.get $srow))))
        (local.set $r (call $pick (local.get $sel) (i32.add (local.get $i) (i32.const 1))))
        (local.set $p1 (call $rowAt (local.get $w) (local.get $r) (local.get $tiles) (i32.const 256)))
        (local.set $s1 (i32.add (local.get $sc) (i32.mul (local.get $r) (local.get $srow))))
        (local.set $r (call $pick (local.get $sel) (i32.add (local.get $i) (i32.const 2))))
        (local.set $p2 (call $rowAt (local.get $w) (local.get $r) (local.get $tiles) (i32.const 256)))
        (local.set $s2 (i32.add (local.get $sc) (i32.mul (local.get $r) (local.get $srow))))
        (local.set $r (call $pick (local.get $sel) (i32.add (local.get $i) (i32.const 3))))
        (local.set $p3 (call $rowAt (local.get $w) (local.get $r) (local.get $tiles) (i32.const 256)))
        (local.set $s3 (i32.add (local.get $sc) (i32.mul (local.get $r) (local.get $srow))))
        (local.set $a0 (v128.const i32x4 0 0 0 0)) (local.set $a1 (v128.const i32x4 0 0 0 0))
        (local.set $a2 (v128.const i32x4 0 0 0 0)) (local.set $a3 (v128.const i32x4 0 0 0 0))
        (local.set $xp (local.get $x))
        (local.set $dp (local.get $xend))
        (loop $tile
          (local.set $b (i32.const 0))
          (loop $blocks
            (local.set $x0 (v128.load (local.get $xp)))
            (local.set $x1 (v128.load offset=16 (local.get $xp)))
            (local.set $x2 (v128.load offset=32 (local.get $xp)))
            (local.set $x3 (v128.load offset=48 (local.get $xp)))
            (local.set $d (v128.load32_splat (local.get $dp)))
            (local.set $a0 (f32x4.relaxed_madd (f32x4.convert_i32x4_s (call $q8dot (local.get $p0) (local.get $x0) (local.get $x1) (local.get $x2) (local.get $x3)))
              (f32x4.mul (v128.load32_splat (local.get $s0)) (local.get $d)) (local.get $a0)))
            (local.set $a1 (f32x4.relaxed_madd (f32x4.convert_i32x4_s (call $q8dot (local.get $p1) (local.get $x0) (local.get $x1) (local.get $x2) (local.get $x3)))
              (f32x4.mul (v128.load32_splat (local.get $s1)) (local.get $d)) (local.get $a1)))
            (local.set $a2 (f32x4.relaxed_madd (f32x4.convert_i32x4_s (call $q8dot (local.get $p2) (local.get $x0) (local.get $x1) (local.get $x2) (local.get $x3)))
              (f32x4.mul (v128.load32_splat (local.get $s2)) (local.get $d)) (local.get $a2)))
            (local.set $a3 (f32x4.relaxed_madd (f32x4.convert_i32x4_s (call $q8dot (local.get $p3) (local.get $x0) (local.get $x1) (local.get $x2) (local.get $x3)))
              (f32x4.mul (v128.load32_splat (local.get $s3)) (local.get $d)) (local.get $a3)))
            (local.set $p0 (i32.add (local.get $p0) (i32.const 32)))
            (local.set $p1 (i32.add (local.get $p1) (i32.const 32)))
            (local.set $p2 (i32.add (local.get $p2) (i32.const 32)))
            (local.set $p3 (i32.add (local.get $p3) (i32.const 32)))
            (local.set $s0 (i32.add (local.get $s0) (i32.const 4)))
            (local.set $s1 (i32.add (local.get $s1) (i32.const 4)))
            (local.set $s2 (i32.add (local.get $s2) (i32.const 4)))
            (local.set $s3 (i32.add (local.get $s3) (i32.const 4)))
            (local.set $xp (i32.add (local.get $xp) (i32.const 64)))
            (local.set $dp (i32.add (local.get $dp) (i32.const 4)))
            (local.set $b (i32.add (local.get $b) (i32.const 1)))
            (br_if $blocks (i32.lt_u (local.get $b) (i32.const 8))))
          ;; next tile: skip the other 3 rows' runs
          (local.set $p0 (i32.add (local.get $p0) (i32.const 768)))
          (local.set $p1 (i32.add (local.get $p1) (i32.const 768)))
          (local.set $p2 (i32.add (local.get $p2) (i32.const 768)))
          (local.set $p3 (i32.add (local.get $p3) (i32.const 768)))
          (br_if $tile (i32.lt_u (local.get $xp) (local.get $xend))))
        (local.set $o (i32.add (local.get $out) (i32.shl (local.get $i) (i32.const 2))))
        (f32.store (local.get $o) (call $finish (local.get $a0)))
        (f32.store offset=4 (local.get $o) (call $finish (local.get $a1)))
        (f32.store offset=8 (local.get $o) (call $finish (local.get $a2)))
        (f32.store offset=12 (local.get $o) (call $finish (local.get $a3)))
        (local.set $i (i32.add (local.get $i) (i32.const 4)))
        (br $rows))))

  ;; Q8_0, four tokens (A16 records at x, x + xs, ...), outputs i0..i1, one row per pass: each widened
  ;; weight vector feeds 4 tokens. Writes out[t·os + 4i].
  (func $mm4_q8 (param $w i32) (param $sc i32) (param $srow i32) (param $x i32) (param $xs i32) (param $out i32) (param $os i32)
    (param $i0 i32) (param $i1 i32) (param $tiles i32) (param $sel i32)
    (local $i i32) (local $r i32) (local $p i32) (local $s i32) (local $xp i32) (local $dp i32) (local $xend i32) (local $b i32) (local $o i32)
    (local $xs2 i32) (local $xs3 i32) (local $dw v128)
    (local $w0 v128) (local $w1 v128) (local $w2 v128) (local $w3 v128)
    (local $a0 v128) (local $a1 v128) (local $a2 v128) (local $a3 v128)
    (local.set $xs2 (i32.shl (local.get $xs) (i32.const 1)))
    (local.set $xs3 (i32.add (local.get $xs2) (local.get $xs)))
    (local.set $xend (i32.add (local.get $x) (i32.shl (local.get $tiles) (i32.const 9))))
    (local.set $i (local.get $i0))
    (block $end
      (loop $rows
        (br_if $end (i32.ge_u (local.get $i) (local.get $i1)))
        (local.set $r (call $pick (local.get $sel) (local.get $i)))
        (local.set $p (call $rowAt (local.get $w) (local.get $r) (local.get $tiles) (i32.const 256)))
        (local.set $s (i32.add (local.get $sc) (i32.mul (local.get $r) (local.get $srow))))
        (local.set $a0 (v128.const i32x4 0 0 0 0)) (local.set $a1 (v128.const i32x4 0 0 0 0))
        (local.set $a2 (v128.const i32x4 0 0 0 0)) (local.set $a3 (v128.const i32x4 0 0 0 0))
        (local.set $xp (local.get $x))
        (local.set $dp (local.get $xend))
        (loop $tile
          (local.set $b (i32.const 0))
          (loop $blocks
            (local.set $w0 (v128.load8x8_s (local.get $p)))
            (local.set $w1 (v128.load8x8_s offset=8 (local.get $p)))
            (local.set $w2 (v128.load8x8_s offset=16 (local.get $p)))
            (local.set $w3 (v128.load8x8_s offset=24 (local.get $p)))
            (local.set $dw (v128.load32_splat (local.get $s)))
            (local.set $a0 (f32x4.relaxed_madd (f32x4.convert_i32x4_s (call $q8dotw (local.get $w0) (local.get $w1) (local.get $w2) (local.get $w3) (local.get $xp)))
              (f32x4.mul (local.get $dw) (v128.load32_splat (local.get $dp))) (local.get $a0)))
            (local.set $a1 (f32x4.relaxed_madd (f32x4.convert_i32x4_s (call $q8dotw (local.get $w0) (local.get $w1) (local.get $w2) (local.get $w3) (i32.add (local.get $xp) (local.get $xs))))
              (f32x4.mul (local.get $dw) (v128.load32_splat (i32.add (local.get $dp) (local.get $xs)))) (local.get $a1)))
            (local.set $a2 (f32x4.relaxed_madd (f32x4.convert_i32x4_s (call $q8dotw (local.get $w0) (local.get $w1) (local.get $w2) (local.get $w3) (i32.add (local.get $xp) (local.get $xs2))))
              (f32x4.mul (local.get $dw) (v128.load32_splat (i32.add (local.get $dp) (local.get $xs2)))) (local.get $a2)))
            (local.set $a3 (f32x4.relaxed_madd (f32x4.convert_i32x4_s (call $q8dotw (local.get $w0) (local.get $w1) (local.get $w2) (local.get $w3) (i32.add (local.get $xp) (local.get $xs3))))
              (f32x4.mul (local.get $dw) (v128.load32_splat (i32.add (local.get $dp) (local.get $xs3)))) (local.get $a3)))
            (local.set $p (i32.add (local.get $p) (i32.const 32)))
            (local.set $s (i32.add (local.get $s) (i32.const 4)))
            (local.set $xp (i32.add (local.get $xp) (i32.const 64)))
            (local.set $dp (i32.add (local.get $dp) (i32.const 4)))
            (local.set $b (i32.add (local.get $b) (i32.const 1)))
            (br_if $blocks (i32.lt_u (local.get $b) (i32.const 8))))
          (local.set $p (i32.add (local.get $p) (i32.const 768)))
          (br_if $tile (i32.lt_u (local.get $xp) (local.get $xend))))
        (local.set $o (i32.add (local.get $out) (i32.shl (local.get $i) (i32.const 2))))
        (f32.store (local.get $o) (call $finish (local.get $a0)))
        (f32.store (i32.add (local.get $o) (local.get $os)) (call $finish (local.get $a1)))
        (f32.store (i32.add (local.get $o) (i32.shl (local.get $os) (i32.const 1))) (call $finish (local.get $a2)))
        (f32.store (i32.add (local.get $o) (i32.mul (local.get $os) (i32.const 3))) (call $finish (local.get $a3)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $rows))))

  ;; $q8dot with the weights already widened and the 32 i16 activations at xp.
  ;; @inline
  (func $q8dotw (param $w0 v128) (param $w1 v128) (param $w2 v128) (param $w3 v128) (param $xp i32) (result v128)
    (i32x4.add
      (i32x4.add (i32x4.dot_i16x8_s (local.get $w0) (v128.load (local.get $xp)))
                 (i32x4.dot_i16x8_s (local.get $w1) (v128.load offset=16 (local.get $xp))))
      (i32x4.add (i32x4.dot_i16x8_s (local.get $w2) (v128.load offset=32 (local.get $xp)))
                 (i32x4.dot_i16x8_s (local.get $w3) (v128.load offset=48 (local.get $xp))))))

  ;; Q4_0 block dot: the 16 packed bytes at p (low nibbles columns 0..15, high 16..31, codes 0..15 in the
  ;; i7 operand) against the block's signed activation codes xa (columns 0..15) and xb (16..31), minus
  ;; 8·Σq in lane 0 (the −8 of every code). Pair sums ≤ 2 · 15 · 127 each, two of them < 2¹⁵.
  ;; @inline
  (func $q4dot (param $v v128) (param $xa v128) (param $xb v128) (param $ones v128) (param $off v128) (param $m15 v128) (result v128)
    (i32x4.sub
      (i32x4.dot_i16x8_s
        (i16x8.add
          (i16x8.relaxed_dot_i8x16_i7x16_s (local.get $xa) (v128.and (local.get $v) (local.get $m15)))
          (i16x8.relaxed_dot_i8x16_i7x16_s (local.get $xb) (v128.and (i16x8.shr_u (local.get $v) (i32.const 4)) (local.get $m15))))
        (local.get $ones))
      (local.get $off)))

  ;; Q4_0, one token (A8 record at x), outputs i0..i1, 4 rows per pass.
  (func $mv_q4 (param $w i32) (param $sc i32) (param $srow i32) (param $x i32) (param $out i32) (param $i0 i32) (param $i1 i32)
    (param $tiles i32) (param $sel i32)
    (local $i i32) (local $r i32) (local $p0 i32) (local $p1 i32) (local $p2 i32) (local $p3 i32)
    (local $s0 i32) (local $s1 i32) (local $s2 i32) (local $s3 i32)
    (local $xp i32) (local $dp i32) (local $xend i32) (local $b i32) (local $o i32) (local $dx f32) (local $P i32)
    (local $xa v128) (local $xb v128) (local $off v128) (local $ones v128) (local $d v128)
    (local $a0 v128) (local $a1 v128) (local $a2 v128) (local $a3 v128) (local $m15 v128)
    (local.set $m15 (v128.load (i32.const 4096)))
    (local.set $ones (v128.load offset=32 (i32.const 4096)))
    (local.set $P (i32.shl (local.get $tiles) (i32.const 8)))
    (local.set $xend (i32.add (local.get $x) (local.get $P)))
    (local.set $i (local.get $i0))
    (block $end
      (loop $rows
        (br_if $end (i32.ge_u (local.get $i) (local.get $i1)))
        (local.set $r (call $pick (local.get $sel) (local.get $i)))
        (local.set $p0 (call $rowAt (local.get $w) (local.get $r) (local.get $tiles) (i32.const 128)))
        (local.set $s0 (i32.add (local.get $sc) (i32.mul (local.get $r) (local.get $srow))))
        (local.set $r (call $pick (local.get $sel) (i32.add (local.get $i) (i32.const 1))))
        (local.set $p1 (call $rowAt (local.get $w) (local.get $r) (local.get $tiles) (i32.const 128)))
        (local.set $s1 (i32.add (local.get $sc) (i32.mul (local.get $r) (local.get $srow))))
        (local.set $r (call $pick (local.get $sel) (i32.add (local.get $i) (i32.const 2))))
        (local.set $p2 (call $rowAt (local.get $w) (local.get $r) (local.get $tiles) (i32.const 128)))
        (local.set $s2 (i32.add (local.get $sc) (i32.mul (local.get $r) (local.get $srow))))
        (local.set $r (call $pick (local.get $sel) (i32.add (local.get $i) (i32.const 3))))
        (local.set $p3 (call $rowAt (local.get $w) (local.get $r) (local.get $tiles) (i32.const 128)))
        (local.set $s3 (i32.add (local.get $sc) (i32.mul (local.get $r) (local.get $srow))))
        (local.set $a0 (v128.const i32x4 0 0 0 0)) (local.set $a1 (v128.const i32x4 0 0 0 0))
        (local.set $a2 (v128.const i32x4 0 0 0 0)) (local.set $a3 (v128.const i32x4 0 0 0 0))
        (local.set $xp (local.get $x))
        (local.set $dp (local.get $xend))
        (loop $tile
          (local.set $b (i32.const 0))
          (loop $blocks
            (local.set $xa (v128.load (local.get $xp)))
            (local.set $xb (v128.load offset=16 (local.get $xp)))
            (local.set $dx (f32.load (local.get $dp)))
            ;; 8·Σq of this block, P/8 bytes after its d
            (local.set $off (v128.load32_zero (i32.add (local.get $dp) (i32.shr_u (local.get $P) (i32.const 3)))))
            (local.set $d (call $scales4 (local.get $s0) (local.get $s1) (local.get $s2) (local.get $s3) (local.get $dx)))
            (local.set $a0 (f32x4.relaxed_madd (f32x4.convert_i32x4_s (call $q4dot (v128.load (local.get $p0)) (local.get $xa) (local.get $xb) (local.get $ones) (local.get $off) (local.get $m15)))
              (i8x16.shuffle 0 1 2 3 0 1 2 3 0 1 2 3 0 1 2 3 (local.get $d) (local.get $d)) (local.get $a0)))
            (local.set $a1 (f32x4.relaxed_madd (f32x4.convert_i32x4_s (call $q4dot (v128.load (local.get $p1)) (local.get $xa) (local.get $xb) (local.get $ones) (local.get $off) (local.get $m15)))
              (i8x16.shuffle 4 5 6 7 4 5 6 7 4 5 6 7 4 5 6 7 (local.get $d) (local.get $d)) (local.get $a1)))
            (local.set $a2 (f32x4.relaxed_madd (f32x4.convert_i32x4_s (call $q4dot (v128.load (local.get $p2)) (local.get $xa) (local.get $xb) (local.get $ones) (local.get $off) (local.get $m15)))
              (i8x16.shuffle 8 9 10 11 8 9 10 11 8 9 10 11 8 9 10 11 (local.get $d) (local.get $d)) (local.get $a2)))
            (local.set $a3 (f32x4.relaxed_madd (f32x4.convert_i32x4_s (call $q4dot (v128.load (local.get $p3)) (local.get $xa) (local.get $xb) (local.get $ones) (local.get $off) (local.get $m15)))
              (i8x16.shuffle 12 13 14 15 12 13 14 15 12 13 14 15 12 13 14 15 (local.get $d) (local.get $d)) (local.get $a3)))
            (local.set $p0 (i32.add (local.get $p0) (i32.const 16)))
            (local.set $p1 (i32.add (local.get $p1) (i32.const 16)))
            (local.set $p2 (i32.add (local.get $p2) (i32.const 16)))
            (local.set $p3 (i32.add (local.get $p3) (i32.const 16)))
            (local.set $s0 (i32.add (local.get $s0) (i32.const 2)))
            (local.set $s1 (i32.add (local.get $s1) (i32.const 2)))
            (local.set $s2 (i32.add (local.get $s2) (i32.const 2)))
            (local.set $s3 (i32.add (local.get $s3) (i32.const 2)))
            (local.set $xp (i32.add (local.get $xp) (i32.const 32)))
            (local.set $dp (i32.add (local.get $dp) (i32.const 4)))
            (local.set $b (i32.add (local.get $b) (i32.const 1)))
            (br_if $blocks (i32.lt_u (local.get $b) (i32.const 8))))
          (local.set $p0 (i32.add (local.get $p0) (i32.const 384)))
          (local.set $p1 (i32.add (local.get $p1) (i32.const 384)))
          (local.set $p2 (i32.add (local.get $p2) (i32.const 384)))
          (local.set $p3 (i32.add (local.get $p3) (i32.const 384)))
          (br_if $tile (i32.lt_u (local.get $xp) (local.get $xend))))
        (local.set $o (i32.add (local.get $out) (i32.shl (local.get $i) (i32.const 2))))
        (f32.store (local.get $o) (call $finish (local.get $a0)))
        (f32.store offset=4 (local.get $o) (call $finish (local.get $a1)))
        (f32.store offset=8 (local.get $o) (call $finish (local.get $a2)))
        (f32.store offset=12 (local.get $o) (call $finish (local.get $a3)))
        (local.set $i (i32.add (local.get $i) (i32.const 4)))
        (br $rows))))

  ;; Q4_0, four tokens, one row per pass.
  (func $mm4_q4 (param $w i32) (param $sc i32) (param $srow i32) (param $x i32) (param $xs i32) (param $out i32) (param $os i32)
    (param $i0 i32) (param $i1 i32) (param $tiles i32) (param $sel i32)
    (local $i i32) (local $r i32) (local $p i32) (local $s i32) (local $xp i32) (local $dp i32) (local $xend i32) (local $b i32) (local $o i32)
    (local $xs2 i32) (local $xs3 i32) (local $P8 i32) (local $dw v128)
    (local $v v128) (local $ones v128)
    (local $a0 v128) (local $a1 v128) (local $a2 v128) (local $a3 v128) (local $m15 v128)
    (local.set $m15 (v128.load (i32.const 4096)))
    (local.set $ones (v128.load offset=32 (i32.const 4096)))
    (local.set $xs2 (i32.shl (local.get $xs) (i32.const 1)))
    (local.set $xs3 (i32.add (local.get $xs2) (local.get $xs)))
    (local.set $xend (i32.add (local.get $x) (i32.shl (local.get $tiles) (i32.const 8))))
    (local.set $P8 (i32.shl (local.get $tiles) (i32.const 5)))
    (local.set $i (local.get $i0))
    (block $end
      (loop $rows
        (br_if $end (i32.ge_u (local.get $i) (local.get $i1)))
        (local.set $r (call $pick (local.get $sel) (local.get $i)))
        (local.set $p (call $rowAt (local.get $w) (local.get $r) (local.get $tiles) (i32.const 128)))
        (local.set $s (i32.add (local.get $sc) (i32.mul (local.get $r) (local.get $srow))))
        (local.set $a0 (v128.const i32x4 0 0 0 0)) (local.set $a1 (v128.const i32x4 0 0 0 0))
        (local.set $a2 (v128.const i32x4 0 0 0 0)) (local.set $a3 (v128.const i32x4 0 0 0 0))
        (local.set $xp (local.get $x))
        (local.set $dp (local.get $xend))
        (loop $tile
          (local.set $b (i32.const 0))
          (loop $blocks
            (local.set $v (v128.load (local.get $p)))
            (local.set $dw (f32x4.splat (call $h2f (i32.load16_u (local.get $s)))))
            (local.set $a0 (f32x4.relaxed_madd (f32x4.convert_i32x4_s (call $q4dot (local.get $v) (v128.load (local.get $xp)) (v128.load offset=16 (local.get $xp)) (local.get $ones)
                (v128.load32_zero (i32.add (local.get $dp) (local.get $P8))) (local.get $m15)))
              (f32x4.mul (local.get $dw) (v128.load32_splat (local.get $dp))) (local.get $a0)))
            (local.set $a1 (f32x4.relaxed_madd (f32x4.convert_i32x4_s (call $q4dot (local.get $v) (v128.load (i32.add (local.get $xp) (local.get $xs))) (v128.load offset=16 (i32.add (local.get $xp) (local.get $xs))) (local.get $ones)
                (v128.load32_zero (i32.add (i32.add (local.get $dp) (local.get $xs)) (local.get $P8))) (local.get $m15)))
              (f32x4.mul (local.get $dw) (v128.load32_splat (i32.add (local.get $dp) (local.get $xs)))) (local.get $a1)))
            (local.set $a2 (f32x4.relaxed_madd (f32x4.convert_i32x4_s (call $q4dot (local.get $v) (v128.load (i32.add (local.get $xp) (local.get $xs2))) (v128.load offset=16 (i32.add (local.get $xp) (local.get $xs2))) (local.get $ones)
                (v128.load32_zero (i32.add (i32.add (local.get $dp) (local.get $xs2)) (local.get $P8))) (local.get $m15)))
              (f32x4.mul (local.get $dw) (v128.load32_splat (i32.add (local.get $dp) (local.get $xs2)))) (local.get $a2)))
            (local.set $a3 (f32x4.relaxed_madd (f32x4.convert_i32x4_s (call $q4dot (local.get $v) (v128.load (i32.add (local.get $xp) (local.get $xs3))) (v128.load offset=16 (i32.add (local.get $xp) (local.get $xs3))) (local.get $ones)
                (v128.load32_zero (i32.add (i32.add (local.get $dp) (local.get $xs3)) (local.get $P8))) (local.get $m15)))
              (f32x4.mul (local.get $dw) (v128.load32_splat (i32.add (local.get $dp) (local.get $xs3)))) (local.get $a3)))
            (local.set $p (i32.add (local.get $p) (i32.const 16)))
            (local.set $s (i32.add (local.get $s) (i32.const 2)))
            (local.set $xp (i32.add (local.get $xp) (i32.const 32)))
            (local.set $dp (i32.add (local.get $dp) (i32.const 4)))
            (local.set $b (i32.add (local.get $b) (i32.const 1)))
            (br_if $blocks (i32.lt_u (local.get $b) (i32.const 8))))
          (local.set $p (i32.add (local.get $p) (i32.const 384)))
          (br_if $tile (i32.lt_u (local.get $xp) (local.get $xend))))
        (local.set $o (i32.add (local.get $out) (i32.shl (local.get $i) (i32.const 2))))
        (f32.store (local.get $o) (call $finish (local.get $a0)))
        (f32.store (i32.add (local.get $o) (local.get $os)) (call $finish (local.get $a1)))
        (f32.store (i32.add (local.get $o) (i32.shl (local.get $os) (i32.const 1))) (call $finish (local.get $a2)))
        (f32.store (i32.add (local.get $o) (i32.mul (local.get $os) (i32.const 3))) (call $finish (local.get $a3)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $rows))))

  ;; ---- Q4_K ----
  ;; One 64-column chunk of a Q4_K super-block for one token: unpacked codes l0 (columns 0..15), l1 (16..31)
  ;; of sub-block 2c and h0 (32..47), h1 (48..63) of sub-block 2c+1, signed activation codes at xp, the two
  ;; sub-block scales splatted to i16 lanes. Pair sums ≤ 2·15·127, two added < 2¹⁵; × sc ≤ 63.
  ;; @inline
  (func $q4kc (param $l0 v128) (param $l1 v128) (param $h0 v128) (param $h1 v128) (param $xp i32) (param $sa v128) (param $sb v128) (result v128)
    (i32x4.add
      (i32x4.dot_i16x8_s
        (i16x8.add (i16x8.relaxed_dot_i8x16_i7x16_s (v128.load (local.get $xp)) (local.get $l0))
                   (i16x8.relaxed_dot_i8x16_i7x16_s (v128.load offset=16 (local.get $xp)) (local.get $l1)))
        (local.get $sa))
      (i32x4.dot_i16x8_s
        (i16x8.add (i16x8.relaxed_dot_i8x16_i7x16_s (v128.load offset=32 (local.get $xp)) (local.get $h0))
                   (i16x8.relaxed_dot_i8x16_i7x16_s (v128.load offset=48 (local.get $xp)) (local.get $h1)))
        (local.get $sb))))

  ;; One row's Q4_K super-block (quants at p, 24-byte scale record at s) against one token's activation
  ;; codes at xp (d_x = dx, Σq per 32 at bs): returns acc + its two terms (see the reduction order above).
  ;; |sumi lane| ≤ 8 · 2 · 63 · 2 · 2 · 15 · 127 < 2³¹.
  ;; @inline
  (func $q4ksb (param $p i32) (param $s i32) (param $xp i32) (param $dx f32) (param $bs i32) (param $acc v128) (param $m15 v128) (result v128)
    (local $sc v128) (local $v0 v128) (local $v1 v128) (local $sumi v128)
    (local.set $sc (v128.load8x8_u offset=8 (local.get $s)))
    (local.set $v0 (v128.load (local.get $p))) (local.set $v1 (v128.load offset=16 (local.get $p)))
    (local.set $sumi (call $q4kc (v128.and (local.get $v0) (local.get $m15))
      (v128.and (local.get $v1) (local.get $m15))
      (v128.and (i16x8.shr_u (local.get $v0) (i32.const 4)) (local.get $m15))
      (v128.and (i16x8.shr_u (local.get $v1) (i32.const 4)) (local.get $m15))
      (local.get $xp)
      (i8x16.relaxed_swizzle (local.get $sc) (v128.load offset=144 (i32.const 4096)))
      (i8x16.relaxed_swizzle (local.get $sc) (v128.load offset=160 (i32.const 4096)))))
    (local.set $v0 (v128.load offset=32 (local.get $p))) (local.set $v1 (v128.load offset=48 (local.get $p)))
    (local.set $sumi (i32x4.add (local.get $sumi) (call $q4kc (v128.and (local.get $v0) (local.get $m15))
      (v128.and (local.get $v1) (local.get $m15))
      (v128.and (i16x8.shr_u (local.get $v0) (i32.const 4)) (local.get $m15))
      (v128.and (i16x8.shr_u (local.get $v1) (i32.const 4)) (local.get $m15))
      (i32.add (local.get $xp) (i32.const 64))
      (i8x16.relaxed_swizzle (local.get $sc) (v128.load offset=176 (i32.const 4096)))
      (i8x16.relaxed_swizzle (local.get $sc) (v128.load offset=192 (i32.const 4096))))))
    (local.set $v0 (v128.load offset=64 (local.get $p))) (local.set $v1 (v128.load offset=80 (local.get $p)))
    (local.set $sumi (i32x4.add (local.get $sumi) (call $q4kc (v128.and (local.get $v0) (local.get $m15))
      (v128.and (local.get $v1) (local.get $m15))
      (v128.and (i16x8.shr_u (local.get $v0) (i32.const 4)) (local.get $m15))
      (v128.and (i16x8.shr_u (local.get $v1) (i32.const 4)) (local.get $m15))
      (i32.add (local.get $xp) (i32.const 128))
      (i8x16.relaxed_swizzle (local.get $sc) (v128.load offset=208 (i32.const 4096)))
      (i8x16.relaxed_swizzle (local.get $sc) (v128.load offset=224 (i32.const 4096))))))
    (local.set $v0 (v128.load offset=96 (local.get $p))) (local.set $v1 (v128.load offset=112 (local.get $p)))
    (local.set $sumi (i32x4.add (local.get $sumi) (call $q4kc (v128.and (local.get $v0) (local.get $m15))
      (v128.and (local.get $v1) (local.get $m15))
      (v128.and (i16x8.shr_u (local.get $v0) (i32.const 4)) (local.get $m15))
      (v128.and (i16x8.shr_u (local.get $v1) (i32.const 4)) (local.get $m15))
      (i32.add (local.get $xp) (i32.const 192))
      (i8x16.relaxed_swizzle (local.get $sc) (v128.load offset=240 (i32.const 4096)))
      (i8x16.relaxed_swizzle (local.get $sc) (v128.load offset=256 (i32.const 4096))))))
    (call $q4kfinish (local.get $sumi) (local.get $s) (local.get $dx) (local.get $bs) (local.get $acc)))

  ;; acc + f32(sumi)·(d·d_x) + f32(Σ m_j·Σq_j)·(−dmin·d_x): the end of a Q4_K super-block for one (row, token).
  ;; |Σ m·Σq lane| ≤ 2 · 63 · 32 · 127.
  ;; @inline
  (func $q4kfinish (param $sumi v128) (param $s i32) (param $dx f32) (param $bs i32) (param $acc v128) (result v128)
    (f32x4.relaxed_madd
      (f32x4.convert_i32x4_s (i32x4.dot_i16x8_s (v128.load8x8_u offset=16 (local.get $s)) (v128.load (local.get $bs))))
      (f32x4.splat (f32.neg (f32.mul (f32.load offset=4 (local.get $s)) (local.get $dx))))
      (f32x4.relaxed_madd (f32x4.convert_i32x4_s (local.get $sumi))
        (f32x4.splat (f32.mul (f32.load (local.get $s)) (local.get $dx)))
        (local.get $acc))))

  ;; Q4_K, one token (AK record at x), outputs i0..i1, 4 rows per pass (the group's 4 runs of a tile are
  ;; read one after the other: one stream).
  (func $mv_q4k (param $w i32) (param $sc i32) (param $srow i32) (param $x i32) (param $out i32) (param $i0 i32) (param $i1 i32)
    (param $tiles i32) (param $sel i32)
    (local $i i32) (local $r i32) (local $p0 i32) (local $p1 i32) (local $p2 i32) (local $p3 i32)
    (local $s0 i32) (local $s1 i32) (local $s2 i32) (local $s3 i32)
    (local $xp i32) (local $dp i32) (local $bs i32) (local $xend i32) (local $o i32) (local $dx f32)
    (local $a0 v128) (local $a1 v128) (local $a2 v128) (local $a3 v128) (local $m15 v128)
    (local.set $m15 (v128.load (i32.const 4096)))
    (local.set $xend (i32.add (local.get $x) (i32.shl (local.get $tiles) (i32.const 8))))
    (local.set $i (local.get $i0))
    (block $end
      (loop $rows
        (br_if $end (i32.ge_u (local.get $i) (local.get $i1)))
        (local.set $r (call $pick (local.get $sel) (local.get $i)))
        (local.set $p0 (call $rowAt (local.get $w) (local.get $r) (local.get $tiles) (i32.const 128)))
        (local.set $s0 (i32.add (local.get $sc) (i32.mul (local.get $r) (local.get $srow))))
        (local.set $r (call $pick (local.get $sel) (i32.add (local.get $i) (i32.const 1))))
        (local.set $p1 (call $rowAt (local.get $w) (local.get $r) (local.get $tiles) (i32.const 128)))
        (local.set $s1 (i32.add (local.get $sc) (i32.mul (local.get $r) (local.get $srow))))
        (local.set $r (call $pick (local.get $sel) (i32.add (local.get $i) (i32.const 2))))
        (local.set $p2 (call $rowAt (local.get $w) (local.get $r) (local.get $tiles) (i32.const 128)))
        (local.set $s2 (i32.add (local.get $sc) (i32.mul (local.get $r) (local.get $srow))))
        (local.set $r (call $pick (local.get $sel) (i32.add (local.get $i) (i32.const 3))))
        (local.set $p3 (call $rowAt (local.get $w) (local.get $r) (local.get $tiles) (i32.const 128)))
        (local.set $s3 (i32.add (local.get $sc) (i32.mul (local.get $r) (local.get $srow))))
        (local.set $a0 (v128.const i32x4 0 0 0 0)) (local.set $a1 (v128.const i32x4 0 0 0 0))
        (local.set $a2 (v128.const i32x4 0 0 0 0)) (local.set $a3 (v128.const i32x4 0 0 0 0))
        (local.set $xp (local.get $x))
        ;; d_x per super-block at P, Σq per 32 at P + P/64 + P/8 (16 bytes per super-block)
        (local.set $dp (local.get $xend))
        (local.set $bs (i32.add (local.get $xend) (i32.mul (local.get $tiles) (i32.const 36))))
        (loop $tile
          (local.set $dx (f32.load (local.get $dp)))
          (local.set $a0 (call $q4ksb (local.get $p0) (local.get $s0) (local.get $xp) (local.get $dx) (local.get $bs) (local.get $a0) (local.get $m15)))
          (local.set $a1 (call $q4ksb (local.get $p1) (local.get $s1) (local.get $xp) (local.get $dx) (local.get $bs) (local.get $a1) (local.get $m15)))
          (local.set $a2 (call $q4ksb (local.get $p2) (local.get $s2) (local.get $xp) (local.get $dx) (local.get $bs) (local.get $a2) (local.get $m15)))
          (local.set $a3 (call $q4ksb (local.get $p3) (local.get $s3) (local.get $xp) (local.get $dx) (local.get $bs) (local.get $a3) (local.get $m15)))
          ;; next tile: this run and the other 3 rows' (4 × 128 B); scale records 20 B per tile
          (local.set $p0 (i32.add (local.get $p0) (i32.const 512)))
          (local.set $p1 (i32.add (local.get $p1) (i32.const 512)))
          (local.set $p2 (i32.add (local.get $p2) (i32.const 512)))
          (local.set $p3 (i32.add (local.get $p3) (i32.const 512)))
          (local.set $s0 (i32.add (local.get $s0) (i32.const 24)))
          (local.set $s1 (i32.add (local.get $s1) (i32.const 24)))
          (local.set $s2 (i32.add (local.get $s2) (i32.const 24)))
          (local.set $s3 (i32.add (local.get $s3) (i32.const 24)))
          (local.set $xp (i32.add (local.get $xp) (i32.const 256)))
          (local.set $dp (i32.add (local.get $dp) (i32.const 4)))
          (local.set $bs (i32.add (local.get $bs) (i32.const 16)))
          (br_if $tile (i32.lt_u (local.get $xp) (local.get $xend))))
        (local.set $o (i32.add (local.get $out) (i32.shl (local.get $i) (i32.const 2))))
        (f32.store (local.get $o) (call $finish (local.get $a0)))
        (f32.store offset=4 (local.get $o) (call $finish (local.get $a1)))
        (f32.store offset=8 (local.get $o) (call $finish (local.get $a2)))
        (f32.store offset=12 (local.get $o) (call $finish (local.get $a3)))
        (local.set $i (i32.add (local.get $i) (i32.const 4)))
        (br $rows))))

  ;; Q4_K, four tokens, one row per pass: each chunk's codes are unpacked once for the 4 tokens.
  (func $mm4_q4k (param $w i32) (param $sc i32) (param $srow i32) (param $x i32) (param $xs i32) (param $out i32) (param $os i32)
    (param $i0 i32) (param $i1 i32) (param $tiles i32) (param $sel i32)
    (local $i i32) (local $r i32) (local $p i32) (local $s i32) (local $xp i32) (local $dp i32) (local $bs i32) (local $xend i32) (local $o i32)
    (local $xs2 i32) (local $xs3 i32) (local $c i32) (local $scv v128) (local $sa v128) (local $sb v128)
    (local $l0 v128) (local $l1 v128) (local $h0 v128) (local $h1 v128)
    (local $t0 v128) (local $t1 v128) (local $t2 v128) (local $t3 v128)
    (local $a0 v128) (local $a1 v128) (local $a2 v128) (local $a3 v128) (local $m15 v128)
    (local.set $m15 (v128.load (i32.const 4096)))
    (local.set $xs2 (i32.shl (local.get $xs) (i32.const 1)))
    (local.set $xs3 (i32.add (local.get $xs2) (local.get $xs)))
    (local.set $xend (i32.add (local.get $x) (i32.shl (local.get $tiles) (i32.const 8))))
    (local.set $i (local.get $i0))
    (block $end
      (loop $rows
        (br_if $end (i32.ge_u (local.get $i) (local.get $i1)))
        (local.set $r (call $pick (local.get $sel) (local.get $i)))
        (local.set $p (call $rowAt (local.get $w) (local.get $r) (local.get $tiles) (i32.const 128)))
        (local.set $s (i32.add (local.get $sc) (i32.mul (local.get $r) (local.get $srow))))
        (local.set $a0 (v128.const i32x4 0 0 0 0)) (local.set $a1 (v128.const i32x4 0 0 0 0))
        (local.set $a2 (v128.const i32x4 0 0 0 0)) (local.set $a3 (v128.const i32x4 0 0 0 0))
        (local.set $xp (local.get $x))
        (local.set $dp (local.get $xend))
        (local.set $bs (i32.add (local.get $xend) (i32.mul (local.get $tiles) (i32.const 36))))
        (loop $tile
          (local.set $scv (v128.load8x8_u offset=8 (local.get $s)))
          (local.set $t0 (v128.const i32x4 0 0 0 0)) (local.set $t1 (v128.const i32x4 0 0 0 0))
          (local.set $t2 (v128.const i32x4 0 0 0 0)) (local.set $t3 (v128.const i32x4 0 0 0 0))
          ;; chunks c = 0..3 (64 columns, 32 bytes each): sub-blocks 2c and 2c+1
          (local.set $c (i32.const 0))
          (loop $chunks
            (local.set $l0 (v128.load (local.get $p)))
            (local.set $l1 (v128.load offset=16 (local.get $p)))
            (local.set $h0 (v128.and (i16x8.shr_u (local.get $l0) (i32.const 4)) (local.get $m15)))
            (local.set $h1 (v128.and (i16x8.shr_u (local.get $l1) (i32.const 4)) (local.get $m15)))
            (local.set $l0 (v128.and (local.get $l0) (local.get $m15)))
            (local.set $l1 (v128.and (local.get $l1) (local.get $m15)))
            ;; sub-block scales 2c, 2c+1 as i16 splats: the first two i16 lanes (rotated by one chunk each time)
            (local.set $sa (i8x16.shuffle 0 1 0 1 0 1 0 1 0 1 0 1 0 1 0 1 (local.get $scv) (local.get $scv)))
            (local.set $sb (i8x16.shuffle 2 3 2 3 2 3 2 3 2 3 2 3 2 3 2 3 (local.get $scv) (local.get $scv)))
            ;; the next chunk's two scales to the front
            (local.set $scv (i8x16.shuffle 4 5 6 7 8 9 10 11 12 13 14 15 0 1 2 3 (local.get $scv) (local.get $scv)))
            (local.set $t0 (i32x4.add (local.get $t0) (call $q4kc (local.get $l0) (local.get $l1) (local.get $h0) (local.get $h1) (local.get $xp) (local.get $sa) (local.get $sb))))
            (local.set $t1 (i32x4.add (local.get $t1) (call $q4kc (local.get $l0) (local.get $l1) (local.get $h0) (local.get $h1) (i32.add (local.get $xp) (local.get $xs)) (local.get $sa) (local.get $sb))))
            (local.set $t2 (i32x4.add (local.get $t2) (call $q4kc (local.get $l0) (local.get $l1) (local.get $h0) (local.get $h1) (i32.add (local.get $xp) (local.get $xs2)) (local.get $sa) (local.get $sb))))
            (local.set $t3 (i32x4.add (local.get $t3) (call $q4kc (local.get $l0) (local.get $l1) (local.get $h0) (local.get $h1) (i32.add (local.get $xp) (local.get $xs3)) (local.get $sa) (local.get $sb))))
            (local.set $p (i32.add (local.get $p) (i32.const 32)))
            (local.set $xp (i32.add (local.get $xp) (i32.const 64)))
            (local.set $c (i32.add (local.get $c) (i32.const 1)))
            (br_if $chunks (i32.lt_u (local.get $c) (i32.const 4))))
          (local.set $a0 (call $q4kfinish (local.get $t0) (local.get $s) (f32.load (local.get $dp)) (local.get $bs) (local.get $a0)))
          (local.set $a1 (call $q4kfinish (local.get $t1) (local.get $s) (f32.load (i32.add (local.get $dp) (local.get $xs))) (i32.add (local.get $bs) (local.get $xs)) (local.get $a1)))
          (local.set $a2 (call $q4kfinish (local.get $t2) (local.get $s) (f32.load (i32.add (local.get $dp) (local.get $xs2))) (i32.add (local.get $bs) (local.get $xs2)) (local.get $a2)))
          (local.set $a3 (call $q4kfinish (local.get $t3) (local.get $s) (f32.load (i32.add (local.get $dp) (local.get $xs3))) (i32.add (local.get $bs) (local.get $xs3)) (local.get $a3)))
          ;; next tile: skip the other 3 rows' runs (the chunk loop advanced p by one run)
          (local.set $p (i32.add (local.get $p) (i32.const 384)))
          (local.set $s (i32.add (local.get $s) (i32.const 24)))
          (local.set $dp (i32.add (local.get $dp) (i32.const 4)))
          (local.set $bs (i32.add (local.get $bs) (i32.const 16)))
          (br_if $tile (i32.lt_u (local.get $xp) (local.get $xend))))
        (local.set $o (i32.add (local.get $out) (i32.shl (local.get $i) (i32.const 2))))
        (f32.store (local.get $o) (call $finish (local.get $a0)))
        (f32.store (i32.add (local.get $o) (local.get $os)) (call $finish (local.get $a1)))
        (f32.store (i32.add (local.get $o) (i32.shl (local.get $os) (i32.const 1))) (call $finish (local.get $a2)))
        (f32.store (i32.add (local.get $o) (i32.mul (local.get $os) (i32.const 3))) (call $finish (local.get $a3)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $rows))))

  ;; ---- Q6_K ----
  ;; 64 columns of a Q6_K half-block for one token: 4 vectors of 16 unpacked codes (0..63, in the i7
  ;; operand) for columns 0..15, 32..47, 64..79, 96..111 of the half (c1..c4), the activation codes at xp
  ;; (column 0 of the half's group), the 4 sub-block scales as i16 splats. Pair sums ≤ 2·63·127 < 2¹⁵;
  ;; × |sc| ≤ 128.
  ;; @inline
  (func $q6kd (param $c1 v128) (param $c2 v128) (param $c3 v128) (param $c4 v128) (param $xp i32)
    (param $s1 v128) (param $s2 v128) (param $s3 v128) (param $s4 v128) (result v128)
    (i32x4.add
      (i32x4.add
        (i32x4.dot_i16x8_s (i16x8.relaxed_dot_i8x16_i7x16_s (v128.load (local.get $xp)) (local.get $c1)) (local.get $s1))
        (i32x4.dot_i16x8_s (i16x8.relaxed_dot_i8x16_i7x16_s (v128.load offset=32 (local.get $xp)) (local.get $c2)) (local.get $s2)))
      (i32x4.add
        (i32x4.dot_i16x8_s (i16x8.relaxed_dot_i8x16_i7x16_s (v128.load offset=64 (local.get $xp)) (local.get $c3)) (local.get $s3))
        (i32x4.dot_i16x8_s (i16x8.relaxed_dot_i8x16_i7x16_s (v128.load offset=96 (local.get $xp)) (local.get $c4)) (local.get $s4)))))

  ;; ggml's Q6_K codes from 16 bytes of ql at qa (columns l: low nibble, l + 64: high nibble), 16 at qb
  ;; (l + 32, l + 96) and 16 of qh (the 2 high bits of l, l + 32, l + 64, l + 96 in bits 0-1, 2-3, 4-5,
  ;; 6-7), as $q6kd's c1 .. c4 (k = 0 .. 3).
  ;; @inline
  (func $q6kcode (param $qa v128) (param $qb v128) (param $qh v128) (param $k i32) (param $m15 v128) (param $m48 v128) (result v128)
    (block $c4 (block $c3 (block $c2 (block $c1
      (br_table $c1 $c2 $c3 $c4 (local.get $k)))
      (return (v128.or (v128.and (local.get $qa) (local.get $m15))
                       (v128.and (i16x8.shl (local.get $qh) (i32.const 4)) (local.get $m48)))))
      (return (v128.or (v128.and (local.get $qb) (local.get $m15))
                       (v128.and (i16x8.shl (local.get $qh) (i32.const 2)) (local.get $m48)))))
      (return (v128.or (v128.and (i16x8.shr_u (local.get $qa) (i32.const 4)) (local.get $m15))
                       (v128.and (local.get $qh) (local.get $m48)))))
    (v128.or (v128.and (i16x8.shr_u (local.get $qb) (i32.const 4)) (local.get $m15))
             (v128.and (i16x8.shr_u (local.get $qh) (i32.const 2)) (local.get $m48))))

  ;; $q6kd on raw ql/qh bytes (one token: the codes are used once).
  ;; @inline
  (func $q6kg (param $qa v128) (param $qb v128) (param $qh v128) (param $xp i32)
    (param $s1 v128) (param $s2 v128) (param $s3 v128) (param $s4 v128) (param $m15 v128) (param $m48 v128) (result v128)
    (call $q6kd
      (call $q6kcode (local.get $qa) (local.get $qb) (local.get $qh) (i32.const 0) (local.get $m15) (local.get $m48))
      (call $q6kcode (local.get $qa) (local.get $qb) (local.get $qh) (i32.const 1) (local.get $m15) (local.get $m48))
      (call $q6kcode (local.get $qa) (local.get $qb) (local.get $qh) (i32.const 2) (local.get $m15) (local.get $m48))
      (call $q6kcode (local.get $qa) (local.get $qb) (local.get $qh) (i32.const 3) (local.get $m15) (local.get $m48))
      (local.get $xp) (local.get $s1) (local.get $s2) (local.get $s3) (local.get $s4)))

  ;; acc + f32(sumi − 32·Σ_j sc_j·Σq_j)·(d·d_x): the end of a Q6_K super-block for one (row, token); the
  ;; −32 of every code comes back through the Σq per 16 at bs. |lanes| < 2³¹ (16 · 2 · 128 · 2 · 63 · 127
  ;; for sumi, 32 · 2 · 2 · 128 · 16 · 127 for the offset).
  ;; @inline
  (func $q6kfinish (param $sumi v128) (param $s i32) (param $dx f32) (param $bs i32) (param $acc v128) (result v128)
    (f32x4.relaxed_madd
      (f32x4.convert_i32x4_s (i32x4.sub (local.get $sumi) (i32x4.shl
        (i32x4.add (i32x4.dot_i16x8_s (v128.load8x8_s (local.get $s)) (v128.load (local.get $bs)))
                   (i32x4.dot_i16x8_s (v128.load8x8_s offset=8 (local.get $s)) (v128.load offset=16 (local.get $bs))))
        (i32.const 5))))
      (f32x4.splat (f32.mul (f32.load offset=16 (local.get $s)) (local.get $dx)))
      (local.get $acc)))

  ;; One row's Q6_K super-block (ql at p, qh at p + 128, 20-byte record at s) against one token: returns acc
  ;; plus its term.
  ;; @inline
  (func $q6ksb (param $p i32) (param $s i32) (param $xp i32) (param $dx f32) (param $bs i32) (param $acc v128) (param $m15 v128) (param $m48 v128) (result v128)
    (local $lo v128) (local $hi v128) (local $sumi v128)
    (local.set $lo (v128.load8x8_s (local.get $s)))
    (local.set $hi (v128.load8x8_s offset=8 (local.get $s)))
    ;; half 0 (columns 0..127): sub-blocks g, 2+g, 4+g, 6+g for g = 0, 1
    (local.set $sumi (i32x4.add
      (call $q6kg (v128.load (local.get $p)) (v128.load offset=32 (local.get $p)) (v128.load offset=128 (local.get $p)) (local.get $xp)
        (i8x16.relaxed_swizzle (local.get $lo) (v128.load offset=144 (i32.const 4096))) (i8x16.relaxed_swizzle (local.get $lo) (v128.load offset=176 (i32.const 4096)))
        (i8x16.relaxed_swizzle (local.get $lo) (v128.load offset=208 (i32.const 4096))) (i8x16.relaxed_swizzle (local.get $lo) (v128.load offset=240 (i32.const 4096))) (local.get $m15) (local.get $m48))
      (call $q6kg (v128.load offset=16 (local.get $p)) (v128.load offset=48 (local.get $p)) (v128.load offset=144 (local.get $p)) (i32.add (local.get $xp) (i32.const 16))
        (i8x16.relaxed_swizzle (local.get $lo) (v128.load offset=160 (i32.const 4096))) (i8x16.relaxed_swizzle (local.get $lo) (v128.load offset=192 (i32.const 4096)))
        (i8x16.relaxed_swizzle (local.get $lo) (v128.load offset=224 (i32.const 4096))) (i8x16.relaxed_swizzle (local.get $lo) (v128.load offset=256 (i32.const 4096))) (local.get $m15) (local.get $m48))))
    ;; half 1 (columns 128..255): ql at +64, qh at +160, sub-blocks 8 + ...
    (local.set $sumi (i32x4.add (local.get $sumi) (i32x4.add
      (call $q6kg (v128.load offset=64 (local.get $p)) (v128.load offset=96 (local.get $p)) (v128.load offset=160 (local.get $p)) (i32.add (local.get $xp) (i32.const 128))
        (i8x16.relaxed_swizzle (local.get $hi) (v128.load offset=144 (i32.const 4096))) (i8x16.relaxed_swizzle (local.get $hi) (v128.load offset=176 (i32.const 4096)))
        (i8x16.relaxed_swizzle (local.get $hi) (v128.load offset=208 (i32.const 4096))) (i8x16.relaxed_swizzle (local.get $hi) (v128.load offset=240 (i32.const 4096))) (local.get $m15) (local.get $m48))
      (call $q6kg (v128.load offset=80 (local.get $p)) (v128.load offset=112 (local.get $p)) (v128.load offset=176 (local.get $p)) (i32.add (local.get $xp) (i32.const 144))
        (i8x16.relaxed_swizzle (local.get $hi) (v128.load offset=160 (i32.const 4096))) (i8x16.relaxed_swizzle (local.get $hi) (v128.load offset=192 (i32.const 4096)))
        (i8x16.relaxed_swizzle (local.get $hi) (v128.load offset=224 (i32.const 4096))) (i8x16.relaxed_swizzle (local.get $hi) (v128.load offset=256 (i32.const 4096))) (local.get $m15) (local.get $m48)))))
    (call $q6kfinish (local.get $sumi) (local.get $s) (local.get $dx) (local.get $bs) (local.get $acc)))

  ;; Q6_K, one token (AK record at x), outputs i0..i1, 4 rows per pass.
  (func $mv_q6k (param $w i32) (param $sc i32) (param $srow i32) (param $x i32) (param $out i32) (param $i0 i32) (param $i1 i32)
    (param $tiles i32) (param $sel i32)
    (local $i i32) (local $r i32) (local $p0 i32) (local $p1 i32) (local $p2 i32) (local $p3 i32)
    (local $s0 i32) (local $s1 i32) (local $s2 i32) (local $s3 i32)
    (local $xp i32) (local $dp i32) (local $bs i32) (local $xend i32) (local $o i32) (local $dx f32)
    (local $a0 v128) (local $a1 v128) (local $a2 v128) (local $a3 v128) (local $m15 v128) (local $m48 v128)
    (local.set $m15 (v128.load (i32.const 4096))) (local.set $m48 (v128.load offset=16 (i32.const 4096)))
    (local.set $xend (i32.add (local.get $x) (i32.shl (local.get $tiles) (i32.const 8))))
    (local.set $i (local.get $i0))
    (block $end
      (loop $rows
        (br_if $end (i32.ge_u (local.get $i) (local.get $i1)))
        (local.set $r (call $pick (local.get $sel) (local.get $i)))
        (local.set $p0 (call $rowAt (local.get $w) (local.get $r) (local.get $tiles) (i32.const 192)))
        (local.set $s0 (i32.add (local.get $sc) (i32.mul (local.get $r) (local.get $srow))))
        (local.set $r (call $pick (local.get $sel) (i32.add (local.get $i) (i32.const 1))))
        (local.set $p1 (call $rowAt (local.get $w) (local.get $r) (local.get $tiles) (i32.const 192)))
        (local.set $s1 (i32.add (local.get $sc) (i32.mul (local.get $r) (local.get $srow))))
        (local.set $r (call $pick (local.get $sel) (i32.add (local.get $i) (i32.const 2))))
        (local.set $p2 (call $rowAt (local.get $w) (local.get $r) (local.get $tiles) (i32.const 192)))
        (local.set $s2 (i32.add (local.get $sc) (i32.mul (local.get $r) (local.get $srow))))
        (local.set $r (call $pick (local.get $sel) (i32.add (local.get $i) (i32.const 3))))
        (local.set $p3 (call $rowAt (local.get $w) (local.get $r) (local.get $tiles) (i32.const 192)))
        (local.set $s3 (i32.add (local.get $sc) (i32.mul (local.get $r) (local.get $srow))))
        (local.set $a0 (v128.const i32x4 0 0 0 0)) (local.set $a1 (v128.const i32x4 0 0 0 0))
        (local.set $a2 (v128.const i32x4 0 0 0 0)) (local.set $a3 (v128.const i32x4 0 0 0 0))
        (local.set $xp (local.get $x))
        ;; d_x per super-block at P, Σq per 16 at P + P/64 (32 bytes per super-block)
        (local.set $dp (local.get $xend))
        (local.set $bs (i32.add (local.get $xend) (i32.shl (local.get $tiles) (i32.const 2))))
        (loop $tile
          (local.set $dx (f32.load (local.get $dp)))
          (local.set $a0 (call $q6ksb (local.get $p0) (local.get $s0) (local.get $xp) (local.get $dx) (local.get $bs) (local.get $a0) (local.get $m15) (local.get $m48)))
          (local.set $a1 (call $q6ksb (local.get $p1) (local.get $s1) (local.get $xp) (local.get $dx) (local.get $bs) (local.get $a1) (local.get $m15) (local.get $m48)))
          (local.set $a2 (call $q6ksb (local.get $p2) (local.get $s2) (local.get $xp) (local.get $dx) (local.get $bs) (local.get $a2) (local.get $m15) (local.get $m48)))
          (local.set $a3 (call $q6ksb (local.get $p3) (local.get $s3) (local.get $xp) (local.get $dx) (local.get $bs) (local.get $a3) (local.get $m15) (local.get $m48)))
          (local.set $p0 (i32.add (local.get $p0) (i32.const 768)))
          (local.set $p1 (i32.add (local.get $p1) (i32.const 768)))
          (local.set $p2 (i32.add (local.get $p2) (i32.const 768)))
          (local.set $p3 (i32.add (local.get $p3) (i32.const 768)))
          (local.set $s0 (i32.add (local.get $s0) (i32.const 20)))
          (local.set $s1 (i32.add (local.get $s1) (i32.const 20)))
          (local.set $s2 (i32.add (local.get $s2) (i32.const 20)))
          (local.set $s3 (i32.add (local.get $s3) (i32.const 20)))
          (local.set $xp (i32.add (local.get $xp) (i32.const 256)))
          (local.set $dp (i32.add (local.get $dp) (i32.const 4)))
          (local.set $bs (i32.add (local.get $bs) (i32.const 32)))
          (br_if $tile (i32.lt_u (local.get $xp) (local.get $xend))))
        (local.set $o (i32.add (local.get $out) (i32.shl (local.get $i) (i32.const 2))))
        (f32.store (local.get $o) (call $finish (local.get $a0)))
        (f32.store offset=4 (local.get $o) (call $finish (local.get $a1)))
        (f32.store offset=8 (local.get $o) (call $finish (local.get $a2)))
        (f32.store offset=12 (local.get $o) (call $finish (local.get $a3)))
        (local.set $i (i32.add (local.get $i) (i32.const 4)))
        (br $rows))))

  ;; Q6_K, four tokens, one row per pass: each group's codes and scale splats are made once for the 4 tokens.
  (func $mm4_q6k (param $w i32) (param $sc i32) (param $srow i32) (param $x i32) (param $xs i32) (param $out i32) (param $os i32)
    (param $i0 i32) (param $i1 i32) (param $tiles i32) (param $sel i32)
    (local $i i32) (local $r i32) (local $p i32) (local $s i32) (local $xp i32) (local $dp i32) (local $bs i32) (local $xend i32) (local $o i32)
    (local $xs2 i32) (local $xs3 i32) (local $g i32) (local $q i32) (local $scv v128)
    (local $qa v128) (local $qb v128) (local $qh v128)
    (local $c1 v128) (local $c2 v128) (local $c3 v128) (local $c4 v128)
    (local $s1 v128) (local $s2 v128) (local $s3 v128) (local $s4 v128)
    (local $t0 v128) (local $t1 v128) (local $t2 v128) (local $t3 v128)
    (local $a0 v128) (local $a1 v128) (local $a2 v128) (local $a3 v128) (local $m15 v128) (local $m48 v128)
    (local.set $m15 (v128.load (i32.const 4096))) (local.set $m48 (v128.load offset=16 (i32.const 4096)))
    (local.set $xs2 (i32.shl (local.get $xs) (i32.const 1)))
    (local.set $xs3 (i32.add (local.get $xs2) (local.get $xs)))
    (local.set $xend (i32.add (local.get $x) (i32.shl (local.get $tiles) (i32.const 8))))
    (local.set $i (local.get $i0))
    (block $end
      (loop $rows
        (br_if $end (i32.ge_u (local.get $i) (local.get $i1)))
        (local.set $r (call $pick (local.get $sel) (local.get $i)))
        (local.set $p (call $rowAt (local.get $w) (local.get $r) (local.get $tiles) (i32.const 192)))
        (local.set $s (i32.add (local.get $sc) (i32.mul (local.get $r) (local.get $srow))))
        (local.set $a0 (v128.const i32x4 0 0 0 0)) (local.set $a1 (v128.const i32x4 0 0 0 0))
        (local.set $a2 (v128.const i32x4 0 0 0 0)) (local.set $a3 (v128.const i32x4 0 0 0 0))
        (local.set $xp (local.get $x))
        (local.set $dp (local.get $xend))
        (local.set $bs (i32.add (local.get $xend) (i32.shl (local.get $tiles) (i32.const 2))))
        (loop $tile
          (local.set $t0 (v128.const i32x4 0 0 0 0)) (local.set $t1 (v128.const i32x4 0 0 0 0))
          (local.set $t2 (v128.const i32x4 0 0 0 0)) (local.set $t3 (v128.const i32x4 0 0 0 0))
          ;; 4 groups: half h = g >> 1, g & 1 = which 16 of its 32 ql/qh bytes; ql at 64h + 16(g&1), qh at
          ;; 128 + 32h + 16(g&1); columns from 128h + 16(g&1); scales 8h + (g&1) + {0, 2, 4, 6}
          (local.set $g (i32.const 0))
          (loop $groups
            (local.set $q (i32.add (local.get $p) (i32.add (i32.shl (i32.shr_u (local.get $g) (i32.const 1)) (i32.const 6)) (i32.shl (i32.and (local.get $g) (i32.const 1)) (i32.const 4)))))
            (local.set $qa (v128.load (local.get $q)))
            (local.set $qb (v128.load offset=32 (local.get $q)))
            (local.set $qh (v128.load (i32.add (local.get $p)
              (i32.add (i32.const 128) (i32.add (i32.shl (i32.shr_u (local.get $g) (i32.const 1)) (i32.const 5)) (i32.shl (i32.and (local.get $g) (i32.const 1)) (i32.const 4)))))))
            (local.set $scv (v128.load8x8_s (i32.add (local.get $s) (i32.shl (i32.shr_u (local.get $g) (i32.const 1)) (i32.const 3)))))
            ;; i16 lanes (g & 1) + 0, 2, 4, 6 of scv splatted: the swizzle masks at 4096 + 144 + 16·lane
            (local.set $q (i32.add (i32.const 4240) (i32.shl (i32.and (local.get $g) (i32.const 1)) (i32.const 4))))
            (local.set $s1 (i8x16.relaxed_swizzle (local.get $scv) (v128.load (local.get $q))))
            (local.set $s2 (i8x16.relaxed_swizzle (local.get $scv) (v128.load offset=32 (local.get $q))))
            (local.set $s3 (i8x16.relaxed_swizzle (local.get $scv) (v128.load offset=64 (local.get $q))))
            (local.set $s4 (i8x16.relaxed_swizzle (local.get $scv) (v128.load offset=96 (local.get $q))))
            (local.set $c1 (call $q6kcode (local.get $qa) (local.get $qb) (local.get $qh) (i32.const 0) (local.get $m15) (local.get $m48)))
            (local.set $c2 (call $q6kcode (local.get $qa) (local.get $qb) (local.get $qh) (i32.const 1) (local.get $m15) (local.get $m48)))
            (local.set $c3 (call $q6kcode (local.get $qa) (local.get $qb) (local.get $qh) (i32.const 2) (local.get $m15) (local.get $m48)))
            (local.set $c4 (call $q6kcode (local.get $qa) (local.get $qb) (local.get $qh) (i32.const 3) (local.get $m15) (local.get $m48)))
            (local.set $q (i32.add (local.get $xp) (i32.add (i32.shl (i32.shr_u (local.get $g) (i32.const 1)) (i32.const 7)) (i32.shl (i32.and (local.get $g) (i32.const 1)) (i32.const 4)))))
            (local.set $t0 (i32x4.add (local.get $t0) (call $q6kd (local.get $c1) (local.get $c2) (local.get $c3) (local.get $c4) (local.get $q) (local.get $s1) (local.get $s2) (local.get $s3) (local.get $s4))))
            (local.set $t1 (i32x4.add (local.get $t1) (call $q6kd (local.get $c1) (local.get $c2) (local.get $c3) (local.get $c4) (i32.add (local.get $q) (local.get $xs)) (local.get $s1) (local.get $s2) (local.get $s3) (local.get $s4))))
            (local.set $t2 (i32x4.add (local.get $t2) (call $q6kd (local.get $c1) (local.get $c2) (local.get $c3) (local.get $c4) (i32.add (local.get $q) (local.get $xs2)) (local.get $s1) (local.get $s2) (local.get $s3) (local.get $s4))))
            (local.set $t3 (i32x4.add (local.get $t3) (call $q6kd (local.get $c1) (local.get $c2) (local.get $c3) (local.get $c4) (i32.add (local.get $q) (local.get $xs3)) (local.get $s1) (local.get $s2) (local.get $s3) (local.get $s4))))
            (local.set $g (i32.add (local.get $g) (i32.const 1)))
            (br_if $groups (i32.lt_u (local.get $g) (i32.const 4))))
          (local.set $a0 (call $q6kfinish (local.get $t0) (local.get $s) (f32.load (local.get $dp)) (local.get $bs) (local.get $a0)))
          (local.set $a1 (call $q6kfinish (local.get $t1) (local.get $s) (f32.load (i32.add (local.get $dp) (local.get $xs))) (i32.add (local.get $bs) (local.get $xs)) (local.get $a1)))
          (local.set $a2 (call $q6kfinish (local.get $t2) (local.get $s) (f32.load (i32.add (local.get $dp) (local.get $xs2))) (i32.add (local.get $bs) (local.get $xs2)) (local.get $a2)))
          (local.set $a3 (call $q6kfinish (local.get $t3) (local.get $s) (f32.load (i32.add (local.get $dp) (local.get $xs3))) (i32.add (local.get $bs) (local.get $xs3)) (local.get $a3)))
          (local.set $p (i32.add (local.get $p) (i32.const 768)))
          (local.set $s (i32.add (local.get $s) (i32.const 20)))
          (local.set $xp (i32.add (local.get $xp) (i32.const 256)))
          (local.set $dp (i32.add (local.get $dp) (i32.const 4)))
          (local.set $bs (i32.add (local.get $bs) (i32.const 32)))
          (br_if $tile (i32.lt_u (local.get $xp) (local.get $xend))))
        (local.set $o (i32.add (local.get $out) (i32.shl (local.get $i) (i32.const 2))))
        (f32.store (local.get $o) (call $finish (local.get $a0)))
        (f32.store (i32.add (local.get $o) (local.get $os)) (call $finish (local.get $a1)))
        (f32.store (i32.add (local.get $o) (i32.shl (local.get $os) (i32.const 1))) (call $finish (local.get $a2)))
        (f32.store (i32.add (local.get $o) (i32.mul (local.get $os) (i32.const 3))) (call $finish (local.get $a3)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $rows))))

  ;; Outputs i0..i1 (multiples of 4) of every token of a quantized matmul (dtype 3 Q8_0, 4 Q4_0, 5 Q4_K,
  ;; 6 Q6_K): groups of 4 tokens through the mm4 kernel, the rest one at a time through the mv kernel
  ;; (both compute each element with the same instruction sequence).
  ;; ARG 2 x: the first token's activation record (A16, A8 or AK)  8 x stride: bytes per record
  ;; 12 scales: row 0's scale record  13 scale record bytes per row
  (func $qBlock (param $i0 i32) (param $i1 i32)
    (local $k i32) (local $w i32) (local $x i32) (local $out i32) (local $tiles i32) (local $T i32) (local $xs i32) (local $os i32)
    (local $sel i32) (local $sc i32) (local $srow i32) (local $t i32) (local $xt i32) (local $ot i32)
    (local.set $k (i32.sub (call $arg (i32.const 0)) (i32.const 3)))
    (local.set $w (call $arg (i32.const 1)))
    (local.set $x (call $arg (i32.const 2)))
    (local.set $out (call $arg (i32.const 3)))
    (local.set $tiles (call $arg (i32.const 6)))
    (local.set $T (call $arg (i32.const 7)))
    (local.set $xs (call $arg (i32.const 8)))
    (local.set $os (call $arg (i32.const 9)))
    (local.set $sel (call $arg (i32.const 10)))
    (local.set $sc (call $arg (i32.const 12)))
    (local.set $srow (call $arg (i32.const 13)))
    (block $done4
      (loop $four
        (br_if $done4 (i32.gt_u (i32.add (local.get $t) (i32.const 4)) (local.get $T)))
        (local.set $xt (i32.add (local.get $x) (i32.mul (local.get $t) (local.get $xs))))
        (local.set $ot (i32.add (local.get $out) (i32.mul (local.get $t) (local.get $os))))
        (block $next4 (block $q6k (block $q4k (block $q4 (block $q8
          (br_table $q8 $q4 $q4k $q6k (local.get $k)))
          (call $mm4_q8 (local.get $w) (local.get $sc) (local.get $srow) (local.get $xt) (local.get $xs) (local.get $ot) (local.get $os) (local.get $i0) (local.get $i1) (local.get $tiles) (local.get $sel))
          (br $next4))
          (call $mm4_q4 (local.get $w) (local.get $sc) (local.get $srow) (local.get $xt) (local.get $xs) (local.get $ot) (local.get $os) (local.get $i0) (local.get $i1) (local.get $tiles) (local.get $sel))
          (br $next4))
          (call $mm4_q4k (local.get $w) (local.get $sc) (local.get $srow) (local.get $xt) (local.get $xs) (local.get $ot) (local.get $os) (local.get $i0) (local.get $i1) (local.get $tiles) (local.get $sel))
          (br $next4))
          (call $mm4_q6k (local.get $w) (local.get $sc) (local.get $srow) (local.get $xt) (local.get $xs) (local.get $ot) (local.get $os) (local.get $i0) (local.get $i1) (local.get $tiles) (local.get $sel)))
        (local.set $t (i32.add (local.get $t) (i32.const 4)))
        (br $four)))
    (block $done
      (loop $one
        (br_if $done (i32.ge_u (local.get $t) (local.get $T)))
        (local.set $xt (i32.add (local.get $x) (i32.mul (local.get $t) (local.get $xs))))
        (local.set $ot (i32.add (local.get $out) (i32.mul (local.get $t) (local.get $os))))
        (block $next (block $q6k (block $q4k (block $q4 (block $q8
          (br_table $q8 $q4 $q4k $q6k (local.get $k)))
          (call $mv_q8 (local.get $w) (local.get $sc) (local.get $srow) (local.get $xt) (local.get $ot) (local.get $i0) (local.get $i1) (local.get $tiles) (local.get $sel))
          (br $next))
          (call $mv_q4 (local.get $w) (local.get $sc) (local.get $srow) (local.get $xt) (local.get $ot) (local.get $i0) (local.get $i1) (local.get $tiles) (local.get $sel))
          (br $next))
          (call $mv_q4k (local.get $w) (local.get $sc) (local.get $srow) (local.get $xt) (local.get $ot) (local.get $i0) (local.get $i1) (local.get $tiles) (local.get $sel))
          (br $next))
          (call $mv_q6k (local.get $w) (local.get $sc) (local.get $srow) (local.get $xt) (local.get $ot) (local.get $i0) (local.get $i1) (local.get $tiles) (local.get $sel)))
        (local.set $t (i32.add (local.get $t) (i32.const 1)))
        (br $one))))

  ;; ---- transposed rows (sparse down_proj): out (T, D) = Σ_i h[t, i] · wT[sel[i], :] ----
  ;; ARG 0 dtype  1 wT (F, D) in the matrix layout  2 h (T, n) f32  3 out (T, tiles·64) f32, zeroed by
  ;;     the caller  4 n  5 sel (n i32 row indices)  6 tiles of wT  7 T  8 tiles per chunk
  ;; A chunk is a range of column tiles; every chunk adds the selected rows one by one in list order
  ;; (out = out + h·w, a multiply-add), so an output element's sum order does not depend on the partition.
  ;; bf16 reads 4 rows per pass over out (then the n mod 4 last rows one by one); f32 and f16 one row.
  (func $transposedChunk (param $idx i32)
    (local $dtype i32) (local $w i32) (local $h i32) (local $out i32) (local $n i32) (local $sel i32)
    (local $tiles i32) (local $T i32) (local $j0 i32) (local $j1 i32) (local $t i32) (local $i i32) (local $r i32)
    (local $rowBytes i32)
    (local.set $dtype (call $arg (i32.const 0)))
    (local.set $w (call $arg (i32.const 1)))
    (local.set $h (call $arg (i32.const 2)))
    (local.set $out (call $arg (i32.const 3)))
    (local.set $n (call $arg (i32.const 4)))
    (local.set $sel (call $arg (i32.const 5)))
    (local.set $tiles (call $arg (i32.const 6)))
    (local.set $T (call $arg (i32.const 7)))
    (local.set $j0 (i32.mul (local.get $idx) (call $arg (i32.const 8))))
    (local.set $j1 (i32.add (local.get $j0) (call $arg (i32.const 8))))
    (if (i32.gt_u (local.get $j1) (local.get $tiles)) (then (local.set $j1 (local.get $tiles))))
    (local.set $t (i32.const 0))
    (loop $tokens
      (if (i32.eq (local.get $dtype) (i32.const 1))
        (then
          ;; bf16: quads of rows, then the rest one by one
          (local.set $i (i32.const 0))
          (block $quadsDone
            (loop $quads
              (br_if $quadsDone (i32.gt_u (i32.add (local.get $i) (i32.const 4)) (local.get $n)))
              (call $axpy4_bf16 (local.get $w) (local.get $tiles) (local.get $sel) (local.get $i)
                (i32.add (local.get $h) (i32.shl (i32.add (i32.mul (local.get $t) (local.get $n)) (local.get $i)) (i32.const 2)))
                (i32.add (local.get $out) (i32.shl (i32.mul (local.get $t) (local.get $tiles)) (i32.const 8)))
                (local.get $j0) (local.get $j1))
              (local.set $i (i32.add (local.get $i) (i32.const 4)))
              (br $quads))))
        (else (local.set $i (i32.const 0))))
      (block $restDone
        (loop $rest
          (br_if $restDone (i32.ge_u (local.get $i) (local.get $n)))
          (call $axpy1 (local.get $dtype) (local.get $w) (local.get $tiles)
            (i32.load (i32.add (local.get $sel) (i32.shl (local.get $i) (i32.const 2))))
            (f32.load (i32.add (local.get $h) (i32.shl (i32.add (i32.mul (local.get $t) (local.get $n)) (local.get $i)) (i32.const 2))))
            (i32.add (local.get $out) (i32.shl (i32.mul (local.get $t) (local.get $tiles)) (i32.const 8)))
            (local.get $j0) (local.get $j1))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $rest)))
      (local.set $t (i32.add (local.get $t) (i32.const 1)))
      (br_if $tokens (i32.lt_u (local.get $t) (local.get $T)))))

  ;; out[tiles j0..j1) = (((out + h0·w0) + h1·w1) + h2·w2) + h3·w3 (four multiply-adds) for the bf16 rows
  ;; sel[i..i+4), h at hp: one pass over out for 4 rows, each row still added on its own, in list order.
  (func $axpy4_bf16 (param $w i32) (param $tiles i32) (param $sel i32) (param $i i32) (param $hp i32) (param $out i32)
    (param $j0 i32) (param $j1 i32)
    (local $p0 i32) (local $p1 i32) (local $p2 i32) (local $p3 i32) (local $o i32) (local $oend i32) (local $b i32)
    (local $h0 v128) (local $h1 v128) (local $h2 v128) (local $h3 v128) (local $v0 v128) (local $v1 v128) (local $v2 v128) (local $v3 v128)
    (if (i32.ge_u (local.get $j0) (local.get $j1)) (then (return)))
    (local.set $h0 (v128.load32_splat (local.get $hp)))
    (local.set $h1 (v128.load32_splat offset=4 (local.get $hp)))
    (local.set $h2 (v128.load32_splat offset=8 (local.get $hp)))
    (local.set $h3 (v128.load32_splat offset=12 (local.get $hp)))
    ;; tile j of a row's run is 512 bytes after tile j-1
    (local.set $p0 (i32.add (call $row16 (local.get $w) (i32.load (i32.add (local.get $sel) (i32.shl (local.get $i) (i32.const 2)))) (local.get $tiles)) (i32.shl (local.get $j0) (i32.const 9))))
    (local.set $p1 (i32.add (call $row16 (local.get $w) (i32.load offset=4 (i32.add (local.get $sel) (i32.shl (local.get $i) (i32.const 2)))) (local.get $tiles)) (i32.shl (local.get $j0) (i32.const 9))))
    (local.set $p2 (i32.add (call $row16 (local.get $w) (i32.load offset=8 (i32.add (local.get $sel) (i32.shl (local.get $i) (i32.const 2)))) (local.get $tiles)) (i32.shl (local.get $j0) (i32.const 9))))
    (local.set $p3 (i32.add (call $row16 (local.get $w) (i32.load offset=12 (i32.add (local.get $sel) (i32.shl (local.get $i) (i32.const 2)))) (local.get $tiles)) (i32.shl (local.get $j0) (i32.const 9))))
    (local.set $o (i32.add (local.get $out) (i32.shl (local.get $j0) (i32.const 8))))
    (local.set $oend (i32.add (local.get $out) (i32.shl (local.get $j1) (i32.const 8))))
    (loop $tile
      (local.set $b (i32.const 0))
      (loop $blocks
        (local.set $v0 (v128.load (local.get $p0)))
        (local.set $v1 (v128.load (local.get $p1)))
        (local.set $v2 (v128.load (local.get $p2)))
        (local.set $v3 (v128.load (local.get $p3)))
        (v128.store (local.get $o)
          (f32x4.relaxed_madd (local.get $h3) (i32x4.shl (local.get $v3) (i32.const 16))
            (f32x4.relaxed_madd (local.get $h2) (i32x4.shl (local.get $v2) (i32.const 16))
              (f32x4.relaxed_madd (local.get $h1) (i32x4.shl (local.get $v1) (i32.const 16))
                (f32x4.relaxed_madd (local.get $h0) (i32x4.shl (local.get $v0) (i32.const 16)) (v128.load (local.get $o)))))))
        (v128.store offset=16 (local.get $o)
          (f32x4.relaxed_madd (local.get $h3) (v128.and (local.get $v3) (v128.const i32x4 0xffff0000 0xffff0000 0xffff0000 0xffff0000))
            (f32x4.relaxed_madd (local.get $h2) (v128.and (local.get $v2) (v128.const i32x4 0xffff0000 0xffff0000 0xffff0000 0xffff0000))
              (f32x4.relaxed_madd (local.get $h1) (v128.and (local.get $v1) (v128.const i32x4 0xffff0000 0xffff0000 0xffff0000 0xffff0000))
                (f32x4.relaxed_madd (local.get $h0) (v128.and (local.get $v0) (v128.const i32x4 0xffff0000 0xffff0000 0xffff0000 0xffff0000))
                  (v128.load offset=16 (local.get $o)))))))
        (local.set $p0 (i32.add (local.get $p0) (i32.const 16)))
        (local.set $p1 (i32.add (local.get $p1) (i32.const 16)))
        (local.set $p2 (i32.add (local.get $p2) (i32.const 16)))
        (local.set $p3 (i32.add (local.get $p3) (i32.const 16)))
        (local.set $o (i32.add (local.get $o) (i32.const 32)))
        (local.set $b (i32.add (local.get $b) (i32.const 1)))
        (br_if $blocks (i32.lt_u (local.get $b) (i32.const 8))))
      (local.set $p0 (i32.add (local.get $p0) (i32.const 384)))
      (local.set $p1 (i32.add (local.get $p1) (i32.const 384)))
      (local.set $p2 (i32.add (local.get $p2) (i32.const 384)))
      (local.set $p3 (i32.add (local.get $p3) (i32.const 384)))
      (br_if $tile (i32.lt_u (local.get $o) (local.get $oend)))))

  ;; out[tiles j0..j1) = out + hv · row r (a multiply-add), any dtype (f32: 32-byte row-blocks; bf16/f16:
  ;; 16-byte ones).
  (func $axpy1 (param $dtype i32) (param $w i32) (param $tiles i32) (param $r i32) (param $hv f32) (param $out i32)
    (param $j0 i32) (param $j1 i32)
    (local $p i32) (local $o i32) (local $oend i32) (local $b i32) (local $h v128) (local $v v128) (local $lo v128) (local $hi v128)
    (if (i32.ge_u (local.get $j0) (local.get $j1)) (then (return)))
    (local.set $h (f32x4.splat (local.get $hv)))
    (local.set $p (if (result i32) (local.get $dtype)
      (then (i32.add (call $row16 (local.get $w) (local.get $r) (local.get $tiles)) (i32.shl (local.get $j0) (i32.const 9))))
      (else (i32.add (call $row32 (local.get $w) (local.get $r) (local.get $tiles)) (i32.shl (local.get $j0) (i32.const 10))))))
    (local.set $o (i32.add (local.get $out) (i32.shl (local.get $j0) (i32.const 8))))
    (local.set $oend (i32.add (local.get $out) (i32.shl (local.get $j1) (i32.const 8))))
    (loop $tile
      (local.set $b (i32.const 0))
      (loop $blocks
        (block $widened
          (block $f16
            (block $bf16
              (block $f32
                (br_table $f32 $bf16 $f16 (local.get $dtype)))
              (local.set $lo (v128.load (local.get $p)))
              (local.set $hi (v128.load offset=16 (local.get $p)))
              (local.set $p (i32.add (local.get $p) (i32.const 32)))
              (br $widened))
            (local.set $v (v128.load (local.get $p)))
            (local.set $lo (i32x4.shl (local.get $v) (i32.const 16)))
            (local.set $hi (v128.and (local.get $v) (v128.const i32x4 0xffff0000 0xffff0000 0xffff0000 0xffff0000)))
            (local.set $p (i32.add (local.get $p) (i32.const 16)))
            (br $widened))
          (local.set $v (v128.load (local.get $p)))
          (local.set $lo (call $f16hi (i32x4.shl (local.get $v) (i32.const 16))))
          (local.set $hi (call $f16hi (local.get $v)))
          (local.set $p (i32.add (local.get $p) (i32.const 16))))
        (v128.store (local.get $o) (f32x4.relaxed_madd (local.get $h) (local.get $lo) (v128.load (local.get $o))))
        (v128.store offset=16 (local.get $o) (f32x4.relaxed_madd (local.get $h) (local.get $hi) (v128.load offset=16 (local.get $o))))
        (local.set $o (i32.add (local.get $o) (i32.const 32)))
        (local.set $b (i32.add (local.get $b) (i32.const 1)))
        (br_if $blocks (i32.lt_u (local.get $b) (i32.const 8))))
      ;; skip the other 3 rows' runs: 3 × 128 B (16-bit) or 3 × 256 B (f32)
      (local.set $p (i32.add (local.get $p) (select (i32.const 384) (i32.const 768) (local.get $dtype))))
      (br_if $tile (i32.lt_u (local.get $o) (local.get $oend)))))

  ;; a·b + c the way f32x4.relaxed_madd computes it here (lane 0). The runtime calls it once: a fused
  ;; multiply-add rounds once, so madd(1 + 2⁻²⁰, 1 + 2⁻²⁰, -(1 + 2⁻¹⁹)) = 2⁻⁴⁰ with FMA and 0 without.
  (func $madd (export "madd") (param $a f32) (param $b f32) (param $c f32) (result f32)
    (f32x4.extract_lane 0
      (f32x4.relaxed_madd (f32x4.splat (local.get $a)) (f32x4.splat (local.get $b)) (f32x4.splat (local.get $c)))))

  ;; The relaxed-SIMD known-answer probe (SimdRuntime.ts runs it on a fresh instance before choosing the
  ;; relaxed binary): reads a, b, c (f32x4 each) at $at and writes relaxed_madd(a, b, c) at $at + 48.
  ;; Operands come from memory so that no compiler can fold them: it is the code the kernels run that is
  ;; checked, by the compiler that runs first (V8's baseline compiler has miscompiled relaxed ops).
  (func $relaxedProbe (export "relaxedProbe") (param $at i32)
    (v128.store offset=48 (local.get $at)
      (f32x4.relaxed_madd (v128.load (local.get $at)) (v128.load offset=16 (local.get $at)) (v128.load offset=32 (local.get $at)))))

;; The relaxed int8 dot-product probe (the self-test's second known answer): reads a (i8x16), b (i8x16,
  ;; 0..127) and c (i32x4) at $at, $at + 16, $at + 32 and writes i16x8.relaxed_dot_i8x16_i7x16_s(a, b) at
  ;; $at + 48 and i32x4.relaxed_dot_i8x16_i7x16_add_s(a, b, c) at $at + 64. V8's baseline compiler has
  ;; computed the latter wrongly on some versions and CPUs (2× for constants, garbage for data).
  (func $relaxedDotProbe (export "relaxedDotProbe") (param $at i32)
    (v128.store offset=48 (local.get $at)
      (i16x8.relaxed_dot_i8x16_i7x16_s (v128.load (local.get $at)) (v128.load offset=16 (local.get $at))))
    (v128.store offset=64 (local.get $at)
      (i32x4.relaxed_dot_i8x16_i7x16_add_s (v128.load (local.get $at)) (v128.load offset=16 (local.get $at)) (v128.load offset=32 (local.get $at)))))

  ;; Plain-SIMD twins of the relaxed int8 dot products, called by the baseline binary (build.mjs rewrites
  ;; each relaxed dot into a call; unused in the relaxed one). For b in 0..127 they compute exactly what
  ;; the relaxed ops compute: lane j of the i16 one is a[2j]·b[2j] + a[2j+1]·b[2j+1] (|·| ≤ 2·128·127 < 2¹⁵),
  ;; lane i of the i32 one a[4i]·b[4i] + ... + a[4i+3]·b[4i+3].
  ;; @inline
  (func $plainDotI8x16I7x16 (param $a v128) (param $b v128) (result v128)
    (i16x8.narrow_i32x4_s
      (i32x4.extadd_pairwise_i16x8_s (i16x8.mul (i16x8.extend_low_i8x16_s (local.get $a)) (i16x8.extend_low_i8x16_s (local.get $b))))
      (i32x4.extadd_pairwise_i16x8_s (i16x8.mul (i16x8.extend_high_i8x16_s (local.get $a)) (i16x8.extend_high_i8x16_s (local.get $b))))))
  ;; @inline
  (func $plainDotI8x16I7x16AddS (param $a v128) (param $b v128) (result v128)
    (i32x4.extadd_pairwise_i16x8_s (call $plainDotI8x16I7x16 (local.get $a) (local.get $b))))

    ;; ---- exp, softmax-free elementwise ops ----

;; e^x per lane (Cephes expf: x = n·ln2 + r, |r| ≤ ln2/2, degree-6 polynomial; about 1 ulp).
  ;; Above ln(FLT_MAX) = 88.7228 the result is +inf, like an f32 exp. Below -86.5 it is e^-86.5 ≈ 2.7e-38
  ;; instead of a subnormal or 0 (harmless next to the 1 of a softmax or silu, and it keeps 2^n normal).
  ;; NaN propagates.
  ;; @inline
  (func $exp4 (param $x0 v128) (result v128)
    (local $x v128) (local $n v128) (local $r v128) (local $p v128)
    ;; pmax/pmin with x first: x < c ? c : x (and c < x ? c : x) keep a NaN x, like max/min, in one
    ;; instruction each (V8 expands f32x4.min/max into a NaN- and zero-sign-handling sequence)
    (local.set $x (f32x4.pmin (f32x4.pmax (local.get $x0) (v128.const f32x4 -86.5 -86.5 -86.5 -86.5))
                              (v128.const f32x4 88.7228 88.7228 88.7228 88.7228)))
    (local.set $n (f32x4.nearest (f32x4.mul (local.get $x) (v128.const f32x4 1.44269504 1.44269504 1.44269504 1.44269504))))
    (local.set $r (f32x4.sub
      (f32x4.sub (local.get $x) (f32x4.mul (local.get $n) (v128.const f32x4 0.693359375 0.693359375 0.693359375 0.693359375)))
      (f32x4.mul (local.get $n) (v128.const f32x4 -2.12194440e-4 -2.12194440e-4 -2.12194440e-4 -2.12194440e-4))))
    (local.set $p (v128.const f32x4 1.9875691500e-4 1.9875691500e-4 1.9875691500e-4 1.9875691500e-4))
    (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $r)) (v128.const f32x4 1.3981999507e-3 1.3981999507e-3 1.3981999507e-3 1.3981999507e-3)))
    (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $r)) (v128.const f32x4 8.3334519073e-3 8.3334519073e-3 8.3334519073e-3 8.3334519073e-3)))
    (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $r)) (v128.const f32x4 4.1665795894e-2 4.1665795894e-2 4.1665795894e-2 4.1665795894e-2)))
    (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $r)) (v128.const f32x4 1.6666665459e-1 1.6666665459e-1 1.6666665459e-1 1.6666665459e-1)))
    (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $r)) (v128.const f32x4 5.0000001201e-1 5.0000001201e-1 5.0000001201e-1 5.0000001201e-1)))
    (local.set $p (f32x4.add
      (f32x4.add (f32x4.mul (f32x4.mul (local.get $p) (local.get $r)) (local.get $r)) (local.get $r))
      (v128.const f32x4 1 1 1 1)))
    ;; × 2^n as 2^(n-1) · 2: n ∈ [-125, 128] after the clamp, so n + 126 ∈ [1, 254] is a normal exponent
    (local.set $p (f32x4.mul
      (f32x4.mul (local.get $p)
        (i32x4.shl (i32x4.add (i32x4.trunc_sat_f32x4_s (local.get $n)) (v128.const i32x4 126 126 126 126)) (i32.const 23)))
      (v128.const f32x4 2 2 2 2)))
    (v128.bitselect (v128.const f32x4 inf inf inf inf) (local.get $p)
      (f32x4.gt (local.get $x0) (v128.const f32x4 88.7228 88.7228 88.7228 88.7228))))

  ;; out[i] = g[i] / (1 + e^(-g[i])) · u[i] for i < n4 (n4 a multiple of 4; the TS side pads).
  (func $swiglu (export "swiglu") (param $g i32) (param $u i32) (param $out i32) (param $n4 i32)
    (local $i i32) (local $gv v128)
    (block $end
      (loop $l
        (br_if $end (i32.ge_u (local.get $i) (local.get $n4)))
        (local.set $gv (v128.load (local.get $g)))
        (v128.store (local.get $out)
          (f32x4.mul
            (f32x4.div (local.get $gv)
              (f32x4.add (v128.const f32x4 1 1 1 1) (call $exp4 (f32x4.neg (local.get $gv)))))
            (v128.load (local.get $u))))
        (local.set $g (i32.add (local.get $g) (i32.const 16)))
        (local.set $u (i32.add (local.get $u) (i32.const 16)))
        (local.set $out (i32.add (local.get $out) (i32.const 16)))
        (local.set $i (i32.add (local.get $i) (i32.const 4)))
        (br $l))))

;; ---- attention: one (token, block of query heads sharing a KV head) item per chunk ----
  ;; ARG 0 q (T rows of H·dh4)  1 keys (Hkv, capacity, dh4)  2 values (the same)  3 out (T rows of H·dh4)
  ;;     4 scores (items × heads per item × spad f32)  5 positions (T i32)  6 H  7 group = H / Hkv  8 dh4
  ;;     (head dim padded to 4)  9 kv stride (bytes per slot of one head = dh4·4)  10 scale (f32 bits)  11 spad (≥ S,
  ;;     mult of 4)  12 mask: 0 = causal (query t sees slots 0..positions[t]), else (T, S) bytes, 1 = visible
  ;;     (tree attention: query t sees exactly its row's slots)  13 S  14 q row stride (bytes)  15 out row
  ;;     stride  16 heads per item (G: a divisor of the group)  17 bytes per KV head (capacity·dh4·4)
  ;; An item's G query heads read the same KV head: each key slot is loaded once and scored against all G
  ;; queries (slot-major), so a long context streams K once per item instead of once per head; then each head's
  ;; softmax and value sum ($attendHead). Per head the arithmetic is the same whatever G: scores sᵢ = (q·kᵢ)·scale
  ;; in f32 (madd over the head's f32x4 lanes, then (l0 + l1) + (l2 + l3)), max-subtracted exp, f32x4 sums,
  ;; out = (Σ eᵢ vᵢ) · (1 / Σ eᵢ). A masked slot's score is -inf and its weight exactly 0.
  ;; A score: (l0 + l1) + (l2 + l3) of the dot product's f32x4 accumulator, times the softmax scale.
  ;; @inline
  (func $score (param $acc v128) (param $scale f32) (result f32)
    (f32.mul (local.get $scale)
      (f32.add
        (f32.add (f32x4.extract_lane 0 (local.get $acc)) (f32x4.extract_lane 1 (local.get $acc)))
        (f32.add (f32x4.extract_lane 2 (local.get $acc)) (f32x4.extract_lane 3 (local.get $acc))))))

  (func $attentionItem (param $item i32)
    (local $H i32) (local $G i32) (local $dh4 i32) (local $kvs i32) (local $t i32) (local $h0 i32) (local $g i32)
    (local $n i32) (local $n4 i32) (local $spad i32) (local $q i32) (local $qh i32) (local $k i32) (local $v i32)
    (local $sc i32) (local $s i32) (local $i i32) (local $kp i32) (local $mrow i32) (local $acc v128) (local $scale f32)
    (local $acc1 v128) (local $acc2 v128) (local $acc3 v128) (local $kv v128) (local $qi i32) (local $hs i32) (local $so i32)
    (local.set $H (call $arg (i32.const 6)))
    (local.set $G (call $arg (i32.const 16)))
    (local.set $dh4 (call $arg (i32.const 8)))
    (local.set $kvs (call $arg (i32.const 9)))
    (local.set $spad (call $arg (i32.const 11)))
    (local.set $scale (f32.reinterpret_i32 (call $arg (i32.const 10))))
    (local.set $t (i32.div_u (local.get $item) (i32.div_u (local.get $H) (local.get $G))))
    (local.set $h0 (i32.mul (i32.rem_u (local.get $item) (i32.div_u (local.get $H) (local.get $G))) (local.get $G)))
    ;; visible slots: 0..positions[t] (causal), or all S slots filtered by the mask row
    (if (call $arg (i32.const 12))
      (then
        (local.set $n (call $arg (i32.const 13)))
        (local.set $mrow (i32.add (call $arg (i32.const 12)) (i32.mul (local.get $t) (local.get $n)))))
      (else
        (local.set $n (i32.add (i32.load (i32.add (call $arg (i32.const 5)) (i32.shl (local.get $t) (i32.const 2)))) (i32.const 1)))))
    (local.set $n4 (i32.and (i32.add (local.get $n) (i32.const 3)) (i32.const -4)))
    ;; q and out rows are activations: token t's row at t·stride (ARG 14 / 15, bytes), head h at h·dh4 floats in it
    (local.set $q (i32.add (i32.add (call $arg (i32.const 0)) (i32.mul (local.get $t) (call $arg (i32.const 14))))
      (i32.shl (i32.mul (local.get $h0) (local.get $dh4)) (i32.const 2))))
    ;; the KV head of the block's heads (h0 / group): its slots are contiguous, kvh·ARG 17 bytes in
    (local.set $k (i32.add (call $arg (i32.const 1))
      (i32.mul (i32.div_u (local.get $h0) (call $arg (i32.const 7))) (call $arg (i32.const 17)))))
    (local.set $v (i32.add (call $arg (i32.const 2)) (i32.sub (local.get $k) (call $arg (i32.const 1)))))
    (local.set $sc (i32.add (call $arg (i32.const 4)) (i32.shl (i32.mul (i32.mul (local.get $item) (local.get $G)) (local.get $spad)) (i32.const 2))))

    ;; scores, slot by slot: head g's at sc + (g·spad + s)·4. Four heads at a time keep four independent
    ;; multiply-add chains in flight (one chain per score would wait on the madd latency at every step); each
    ;; head's own chain, and so its score, is the same as one head at a time.
    (local.set $kp (local.get $k))
    (local.set $s (i32.const 0))
    (loop $slots
      (if (i32.and (i32.ne (local.get $mrow) (i32.const 0))
                   (i32.eqz (i32.load8_u (i32.add (local.get $mrow) (local.get $s)))))
        (then
          (local.set $g (i32.const 0))
          (loop $masked
            (f32.store (i32.add (local.get $sc) (i32.shl (i32.add (i32.mul (local.get $g) (local.get $spad)) (local.get $s)) (i32.const 2))) (f32.const -inf))
            (local.set $g (i32.add (local.get $g) (i32.const 1)))
            (br_if $masked (i32.lt_u (local.get $g) (local.get $G)))))
        (else
          (local.set $g (i32.const 0))
          (block $fours
            (loop $heads4
              (br_if $fours (i32.gt_u (i32.add (local.get $g) (i32.const 4)) (local.get $G)))
              (local.set $qh (i32.add (local.get $q) (i32.shl (i32.mul (local.get $g) (local.get $dh4)) (i32.const 2))))
              (local.set $hs (i32.shl (local.get $dh4) (i32.const 2)))
              (local.set $acc (v128.const i32x4 0 0 0 0)) (local.set $acc1 (v128.const i32x4 0 0 0 0))
              (local.set $acc2 (v128.const i32x4 0 0 0 0)) (local.set $acc3 (v128.const i32x4 0 0 0 0))
              ;; head dim 64 (the usual one): the same chains straight-line, constant offsets
              (if (i32.eq (local.get $hs) (i32.const 256))
                (then
                  (local.set $kv (v128.load offset=0 (local.get $kp)))
                  (local.set $acc (f32x4.relaxed_madd (v128.load offset=0 (local.get $qh)) (local.get $kv) (local.get $acc)))
                  (local.set $acc1 (f32x4.relaxed_madd (v128.load offset=256 (local.get $qh)) (local.get $kv) (local.get $acc1)))
                  (local.set $acc2 (f32x4.relaxed_madd (v128.load offset=512 (local.get $qh)) (local.get $kv) (local.get $acc2)))
                  (local.set $acc3 (f32x4.relaxed_madd (v128.load offset=768 (local.get $qh)) (local.get $kv) (local.get $acc3)))
                  (local.set $kv (v128.load offset=16 (local.get $kp)))
                  (local.set $acc (f32x4.relaxed_madd (v128.load offset=16 (local.get $qh)) (local.get $kv) (local.get $acc)))
                  (local.set $acc1 (f32x4.relaxed_madd (v128.load offset=272 (local.get $qh)) (local.get $kv) (local.get $acc1)))
                  (local.set $acc2 (f32x4.relaxed_madd (v128.load offset=528 (local.get $qh)) (local.get $kv) (local.get $acc2)))
                  (local.set $acc3 (f32x4.relaxed_madd (v128.load offset=784 (local.get $qh)) (local.get $kv) (local.get $acc3)))
                  (local.set $kv (v128.load offset=32 (local.get $kp)))
                  (local.set $acc (f32x4.relaxed_madd (v128.load offset=32 (local.get $qh)) (local.get $kv) (local.get $acc)))
                  (local.set $acc1 (f32x4.relaxed_madd (v128.load offset=288 (local.get $qh)) (local.get $kv) (local.get $acc1)))
                  (local.set $acc2 (f32x4.relaxed_madd (v128.load offset=544 (local.get $qh)) (local.get $kv) (local.get $acc2)))
                  (local.set $acc3 (f32x4.relaxed_madd (v128.load offset=800 (local.get $qh)) (local.get $kv) (local.get $acc3)))
                  (local.set $kv (v128.load offset=48 (local.get $kp)))
                  (local.set $acc (f32x4.relaxed_madd (v128.load offset=48 (local.get $qh)) (local.get $kv) (local.get $acc)))
                  (local.set $acc1 (f32x4.relaxed_madd (v128.load offset=304 (local.get $qh)) (local.get $kv) (local.get $acc1)))
                  (local.set $acc2 (f32x4.relaxed_madd (v128.load offset=560 (local.get $qh)) (local.get $kv) (local.get $acc2)))
                  (local.set $acc3 (f32x4.relaxed_madd (v128.load offset=816 (local.get $qh)) (local.get $kv) (local.get $acc3)))
                  (local.set $kv (v128.load offset=64 (local.get $kp)))
                  (local.set $acc (f32x4.relaxed_madd (v128.load offset=64 (local.get $qh)) (local.get $kv) (local.get $acc)))
                  (local.set $acc1 (f32x4.relaxed_madd (v128.load offset=320 (local.get $qh)) (local.get $kv) (local.get $acc1)))
                  (local.set $acc2 (f32x4.relaxed_madd (v128.load offset=576 (local.get $qh)) (local.get $kv) (local.get $acc2)))
                  (local.set $acc3 (f32x4.relaxed_madd (v128.load offset=832 (local.get $qh)) (local.get $kv) (local.get $acc3)))
                  (local.set $kv (v128.load offset=80 (local.get $kp)))
                  (local.set $acc (f32x4.relaxed_madd (v128.load offset=80 (local.get $qh)) (local.get $kv) (local.get $acc)))
                  (local.set $acc1 (f32x4.relaxed_madd (v128.load offset=336 (local.get $qh)) (local.get $kv) (local.get $acc1)))
                  (local.set $acc2 (f32x4.relaxed_madd (v128.load offset=592 (local.get $qh)) (local.get $kv) (local.get $acc2)))
                  (local.set $acc3 (f32x4.relaxed_madd (v128.load offset=848 (local.get $qh)) (local.get $kv) (local.get $acc3)))
                  (local.set $kv (v128.load offset=96 (local.get $kp)))
                  (local.set $acc (f32x4.relaxed_madd (v128.load offset=96 (local.get $qh)) (local.get $kv) (local.get $acc)))
                  (local.set $acc1 (f32x4.relaxed_madd (v128.load offset=352 (local.get $qh)) (local.get $kv) (local.get $acc1)))
                  (local.set $acc2 (f32x4.relaxed_madd (v128.load offset=608 (local.get $qh)) (local.get $kv) (local.get $acc2)))
                  (local.set $acc3 (f32x4.relaxed_madd (v128.load offset=864 (local.get $qh)) (local.get $kv) (local.get $acc3)))
                  (local.set $kv (v128.load offset=112 (local.get $kp)))
                  (local.set $acc (f32x4.relaxed_madd (v128.load offset=112 (local.get $qh)) (local.get $kv) (local.get $acc)))
                  (local.set $acc1 (f32x4.relaxed_madd (v128.load offset=368 (local.get $qh)) (local.get $kv) (local.get $acc1)))
                  (local.set $acc2 (f32x4.relaxed_madd (v128.load offset=624 (local.get $qh)) (local.get $kv) (local.get $acc2)))
                  (local.set $acc3 (f32x4.relaxed_madd (v128.load offset=880 (local.get $qh)) (local.get $kv) (local.get $acc3)))
                  (local.set $kv (v128.load offset=128 (local.get $kp)))
                  (local.set $acc (f32x4.relaxed_madd (v128.load offset=128 (local.get $qh)) (local.get $kv) (local.get $acc)))
                  (local.set $acc1 (f32x4.relaxed_madd (v128.load offset=384 (local.get $qh)) (local.get $kv) (local.get $acc1)))
                  (local.set $acc2 (f32x4.relaxed_madd (v128.load offset=640 (local.get $qh)) (local.get $kv) (local.get $acc2)))
                  (local.set $acc3 (f32x4.relaxed_madd (v128.load offset=896 (local.get $qh)) (local.get $kv) (local.get $acc3)))
                  (local.set $kv (v128.load offset=144 (local.get $kp)))
                  (local.set $acc (f32x4.relaxed_madd (v128.load offset=144 (local.get $qh)) (local.get $kv) (local.get $acc)))
                  (local.set $acc1 (f32x4.relaxed_madd (v128.load offset=400 (local.get $qh)) (local.get $kv) (local.get $acc1)))
                  (local.set $acc2 (f32x4.relaxed_madd (v128.load offset=656 (local.get $qh)) (local.get $kv) (local.get $acc2)))
                  (local.set $acc3 (f32x4.relaxed_madd (v128.load offset=912 (local.get $qh)) (local.get $kv) (local.get $acc3)))
                  (local.set $kv (v128.load offset=160 (local.get $kp)))
                  (local.set $acc (f32x4.relaxed_madd (v128.load offset=160 (local.get $qh)) (local.get $kv) (local.get $acc)))
                  (local.set $acc1 (f32x4.relaxed_madd (v128.load offset=416 (local.get $qh)) (local.get $kv) (local.get $acc1)))
                  (local.set $acc2 (f32x4.relaxed_madd (v128.load offset=672 (local.get $qh)) (local.get $kv) (local.get $acc2)))
                  (local.set $acc3 (f32x4.relaxed_madd (v128.load offset=928 (local.get $qh)) (local.get $kv) (local.get $acc3)))
                  (local.set $kv (v128.load offset=176 (local.get $kp)))
                  (local.set $acc (f32x4.relaxed_madd (v128.load offset=176 (local.get $qh)) (local.get $kv) (local.get $acc)))
                  (local.set $acc1 (f32x4.relaxed_madd (v128.load offset=432 (local.get $qh)) (local.get $kv) (local.get $acc1)))
                  (local.set $acc2 (f32x4.relaxed_madd (v128.load offset=688 (local.get $qh)) (local.get $kv) (local.get $acc2)))
                  (local.set $acc3 (f32x4.relaxed_madd (v128.load offset=944 (local.get $qh)) (local.get $kv) (local.get $acc3)))
                  (local.set $kv (v128.load offset=192 (local.get $kp)))
                  (local.set $acc (f32x4.relaxed_madd (v128.load offset=192 (local.get $qh)) (local.get $kv) (local.get $acc)))
                  (local.set $acc1 (f32x4.relaxed_madd (v128.load offset=448 (local.get $qh)) (local.get $kv) (local.get $acc1)))
                  (local.set $acc2 (f32x4.relaxed_madd (v128.load offset=704 (local.get $qh)) (local.get $kv) (local.get $acc2)))
                  (local.set $acc3 (f32x4.relaxed_madd (v128.load offset=960 (local.get $qh)) (local.get $kv) (local.get $acc3)))
                  (local.set $kv (v128.load offset=208 (local.get $kp)))
                  (local.set $acc (f32x4.relaxed_madd (v128.load offset=208 (local.get $qh)) (local.get $kv) (local.get $acc)))
                  (local.set $acc1 (f32x4.relaxed_madd (v128.load offset=464 (local.get $qh)) (local.get $kv) (local.get $acc1)))
                  (local.set $acc2 (f32x4.relaxed_madd (v128.load offset=720 (local.get $qh)) (local.get $kv) (local.get $acc2)))
                  (local.set $acc3 (f32x4.relaxed_madd (v128.load offset=976 (local.get $qh)) (local.get $kv) (local.get $acc3)))
                  (local.set $kv (v128.load offset=224 (local.get $kp)))
                  (local.set $acc (f32x4.relaxed_madd (v128.load offset=224 (local.get $qh)) (local.get $kv) (local.get $acc)))
                  (local.set $acc1 (f32x4.relaxed_madd (v128.load offset=480 (local.get $qh)) (local.get $kv) (local.get $acc1)))
                  (local.set $acc2 (f32x4.relaxed_madd (v128.load offset=736 (local.get $qh)) (local.get $kv) (local.get $acc2)))
                  (local.set $acc3 (f32x4.relaxed_madd (v128.load offset=992 (local.get $qh)) (local.get $kv) (local.get $acc3)))
                  (local.set $kv (v128.load offset=240 (local.get $kp)))
                  (local.set $acc (f32x4.relaxed_madd (v128.load offset=240 (local.get $qh)) (local.get $kv) (local.get $acc)))
                  (local.set $acc1 (f32x4.relaxed_madd (v128.load offset=496 (local.get $qh)) (local.get $kv) (local.get $acc1)))
                  (local.set $acc2 (f32x4.relaxed_madd (v128.load offset=752 (local.get $qh)) (local.get $kv) (local.get $acc2)))
                  (local.set $acc3 (f32x4.relaxed_madd (v128.load offset=1008 (local.get $qh)) (local.get $kv) (local.get $acc3)))
                )
                (else
                  (local.set $i (i32.const 0))
                  (loop $dot4
                    (local.set $kv (v128.load (i32.add (local.get $kp) (local.get $i))))
                    (local.set $qi (i32.add (local.get $qh) (local.get $i)))
                    (local.set $acc (f32x4.relaxed_madd (v128.load (local.get $qi)) (local.get $kv) (local.get $acc)))
                    (local.set $qi (i32.add (local.get $qi) (local.get $hs)))
                    (local.set $acc1 (f32x4.relaxed_madd (v128.load (local.get $qi)) (local.get $kv) (local.get $acc1)))
                    (local.set $qi (i32.add (local.get $qi) (local.get $hs)))
                    (local.set $acc2 (f32x4.relaxed_madd (v128.load (local.get $qi)) (local.get $kv) (local.get $acc2)))
                    (local.set $qi (i32.add (local.get $qi) (local.get $hs)))
                    (local.set $acc3 (f32x4.relaxed_madd (v128.load (local.get $qi)) (local.get $kv) (local.get $acc3)))
                    (local.set $i (i32.add (local.get $i) (i32.const 16)))
                    (br_if $dot4 (i32.lt_u (local.get $i) (local.get $hs))))))
              (local.set $so (i32.add (local.get $sc) (i32.shl (i32.add (i32.mul (local.get $g) (local.get $spad)) (local.get $s)) (i32.const 2))))
              (f32.store (local.get $so) (call $score (local.get $acc) (local.get $scale)))
              (local.set $so (i32.add (local.get $so) (i32.shl (local.get $spad) (i32.const 2))))
              (f32.store (local.get $so) (call $score (local.get $acc1) (local.get $scale)))
              (local.set $so (i32.add (local.get $so) (i32.shl (local.get $spad) (i32.const 2))))
              (f32.store (local.get $so) (call $score (local.get $acc2) (local.get $scale)))
              (local.set $so (i32.add (local.get $so) (i32.shl (local.get $spad) (i32.const 2))))
              (f32.store (local.get $so) (call $score (local.get $acc3) (local.get $scale)))
              (local.set $g (i32.add (local.get $g) (i32.const 4)))
              (br $heads4)))
          (block $ones
            (loop $heads
              (br_if $ones (i32.ge_u (local.get $g) (local.get $G)))
              (local.set $qh (i32.add (local.get $q) (i32.shl (i32.mul (local.get $g) (local.get $dh4)) (i32.const 2))))
              (local.set $acc (v128.const i32x4 0 0 0 0))
              (local.set $i (i32.const 0))
              (loop $dot
                (local.set $acc (f32x4.relaxed_madd
                  (v128.load (i32.add (local.get $qh) (local.get $i))) (v128.load (i32.add (local.get $kp) (local.get $i))) (local.get $acc)))
                (local.set $i (i32.add (local.get $i) (i32.const 16)))
                (br_if $dot (i32.lt_u (local.get $i) (i32.shl (local.get $dh4) (i32.const 2)))))
              (f32.store (i32.add (local.get $sc) (i32.shl (i32.add (i32.mul (local.get $g) (local.get $spad)) (local.get $s)) (i32.const 2)))
                (call $score (local.get $acc) (local.get $scale)))
              (local.set $g (i32.add (local.get $g) (i32.const 1)))
              (br $heads)))))
      (local.set $kp (i32.add (local.get $kp) (local.get $kvs)))
      (local.set $s (i32.add (local.get $s) (i32.const 1)))
      (br_if $slots (i32.lt_u (local.get $s) (local.get $n))))

    ;; each head: softmax over its scores and the weighted sum of values
    (local.set $g (i32.const 0))
    (loop $each
      (call $attendHead
        (i32.add (local.get $sc) (i32.shl (i32.mul (local.get $g) (local.get $spad)) (i32.const 2)))
        (local.get $n) (local.get $n4) (local.get $v) (local.get $kvs) (local.get $dh4)
        (i32.add (i32.add (call $arg (i32.const 3)) (i32.mul (local.get $t) (call $arg (i32.const 15))))
          (i32.shl (i32.mul (i32.add (local.get $h0) (local.get $g)) (local.get $dh4)) (i32.const 2))))
      (local.set $g (i32.add (local.get $g) (i32.const 1)))
      (br_if $each (i32.lt_u (local.get $g) (local.get $G)))))

  ;; One head: scores sc[0..n) (masked ones -inf) become weights e = exp(s − max) in place (n..n4 zeroed for
  ;; the f32x4 sums), then out[0..dh4) = (Σ_s e_s · v_s) · (1 / Σ e), v_s at v + s·kvs.
  (func $attendHead (param $sc i32) (param $n i32) (param $n4 i32) (param $v i32) (param $kvs i32) (param $dh4 i32) (param $o i32)
    (local $s i32) (local $i i32) (local $vp i32) (local $max f32) (local $e v128) (local $sum v128) (local $inv v128)
    (local $a0 v128) (local $a1 v128) (local $a2 v128) (local $a3 v128) (local $a4 v128) (local $a5 v128) (local $a6 v128) (local $a7 v128)
    ;; slots n..n4 hold whatever the scratch held: set them to -inf so their weights come out exactly 0 (and
    ;; the max, four lanes at a time, is the max of the n scores: max is exact in any order)
    (local.set $s (local.get $n))
    (block $padded
      (loop $pad
        (br_if $padded (i32.ge_u (local.get $s) (local.get $n4)))
        (f32.store (i32.add (local.get $sc) (i32.shl (local.get $s) (i32.const 2))) (f32.const -inf))
        (local.set $s (i32.add (local.get $s) (i32.const 1)))
        (br $pad)))
    (local.set $e (v128.const f32x4 -inf -inf -inf -inf))
    (local.set $s (i32.const 0))
    (loop $maxes
      (local.set $e (f32x4.max (local.get $e) (v128.load (i32.add (local.get $sc) (i32.shl (local.get $s) (i32.const 2))))))
      (local.set $s (i32.add (local.get $s) (i32.const 4)))
      (br_if $maxes (i32.lt_u (local.get $s) (local.get $n4))))
    (local.set $max (f32.max
      (f32.max (f32x4.extract_lane 0 (local.get $e)) (f32x4.extract_lane 1 (local.get $e)))
      (f32.max (f32x4.extract_lane 2 (local.get $e)) (f32x4.extract_lane 3 (local.get $e)))))
    (local.set $sum (v128.const i32x4 0 0 0 0))
    (local.set $s (i32.const 0))
    (loop $exps
      (local.set $e (v128.load (i32.add (local.get $sc) (i32.shl (local.get $s) (i32.const 2)))))
      (local.set $e
        (v128.andnot
          (call $exp4 (f32x4.sub (local.get $e) (f32x4.splat (local.get $max))))
          (f32x4.eq (local.get $e) (v128.const f32x4 -inf -inf -inf -inf))))
      (v128.store (i32.add (local.get $sc) (i32.shl (local.get $s) (i32.const 2))) (local.get $e))
      (local.set $sum (f32x4.add (local.get $sum) (local.get $e)))
      (local.set $s (i32.add (local.get $s) (i32.const 4)))
      (br_if $exps (i32.lt_u (local.get $s) (local.get $n4))))
    (local.set $inv (f32x4.splat (f32.div (f32.const 1)
      (f32.add
        (f32.add (f32x4.extract_lane 0 (local.get $sum)) (f32x4.extract_lane 1 (local.get $sum)))
        (f32.add (f32x4.extract_lane 2 (local.get $sum)) (f32x4.extract_lane 3 (local.get $sum)))))))

    ;; out[i..i+32) = Σ_s e_s · v_s[i..i+32): eight f32x4 columns per pass over the slots (eight independent
    ;; multiply-add chains), then four, then single columns; every element's sum runs over s in order
    (local.set $i (i32.const 0))
    (block $wider
      (loop $cols8
        (br_if $wider (i32.gt_u (i32.add (local.get $i) (i32.const 128)) (i32.shl (local.get $dh4) (i32.const 2))))
        (local.set $a0 (v128.const i32x4 0 0 0 0)) (local.set $a1 (v128.const i32x4 0 0 0 0))
        (local.set $a2 (v128.const i32x4 0 0 0 0)) (local.set $a3 (v128.const i32x4 0 0 0 0))
        (local.set $a4 (v128.const i32x4 0 0 0 0)) (local.set $a5 (v128.const i32x4 0 0 0 0))
        (local.set $a6 (v128.const i32x4 0 0 0 0)) (local.set $a7 (v128.const i32x4 0 0 0 0))
        (local.set $vp (i32.add (local.get $v) (local.get $i)))
        (local.set $s (i32.const 0))
        (loop $slots8
          (local.set $e (v128.load32_splat (i32.add (local.get $sc) (i32.shl (local.get $s) (i32.const 2)))))
          (local.set $a0 (f32x4.relaxed_madd (local.get $e) (v128.load (local.get $vp)) (local.get $a0)))
          (local.set $a1 (f32x4.relaxed_madd (local.get $e) (v128.load offset=16 (local.get $vp)) (local.get $a1)))
          (local.set $a2 (f32x4.relaxed_madd (local.get $e) (v128.load offset=32 (local.get $vp)) (local.get $a2)))
          (local.set $a3 (f32x4.relaxed_madd (local.get $e) (v128.load offset=48 (local.get $vp)) (local.get $a3)))
          (local.set $a4 (f32x4.relaxed_madd (local.get $e) (v128.load offset=64 (local.get $vp)) (local.get $a4)))
          (local.set $a5 (f32x4.relaxed_madd (local.get $e) (v128.load offset=80 (local.get $vp)) (local.get $a5)))
          (local.set $a6 (f32x4.relaxed_madd (local.get $e) (v128.load offset=96 (local.get $vp)) (local.get $a6)))
          (local.set $a7 (f32x4.relaxed_madd (local.get $e) (v128.load offset=112 (local.get $vp)) (local.get $a7)))
          (local.set $vp (i32.add (local.get $vp) (local.get $kvs)))
          (local.set $s (i32.add (local.get $s) (i32.const 1)))
          (br_if $slots8 (i32.lt_u (local.get $s) (local.get $n))))
        (v128.store (i32.add (local.get $o) (local.get $i)) (f32x4.mul (local.get $a0) (local.get $inv)))
        (v128.store offset=16 (i32.add (local.get $o) (local.get $i)) (f32x4.mul (local.get $a1) (local.get $inv)))
        (v128.store offset=32 (i32.add (local.get $o) (local.get $i)) (f32x4.mul (local.get $a2) (local.get $inv)))
        (v128.store offset=48 (i32.add (local.get $o) (local.get $i)) (f32x4.mul (local.get $a3) (local.get $inv)))
        (v128.store offset=64 (i32.add (local.get $o) (local.get $i)) (f32x4.mul (local.get $a4) (local.get $inv)))
        (v128.store offset=80 (i32.add (local.get $o) (local.get $i)) (f32x4.mul (local.get $a5) (local.get $inv)))
        (v128.store offset=96 (i32.add (local.get $o) (local.get $i)) (f32x4.mul (local.get $a6) (local.get $inv)))
        (v128.store offset=112 (i32.add (local.get $o) (local.get $i)) (f32x4.mul (local.get $a7) (local.get $inv)))
        (local.set $i (i32.add (local.get $i) (i32.const 128)))
        (br $cols8)))
    (block $wide
      (loop $cols4
        (br_if $wide (i32.gt_u (i32.add (local.get $i) (i32.const 64)) (i32.shl (local.get $dh4) (i32.const 2))))
        (local.set $a0 (v128.const i32x4 0 0 0 0)) (local.set $a1 (v128.const i32x4 0 0 0 0))
        (local.set $a2 (v128.const i32x4 0 0 0 0)) (local.set $a3 (v128.const i32x4 0 0 0 0))
        (local.set $vp (i32.add (local.get $v) (local.get $i)))
        (local.set $s (i32.const 0))
        (loop $slots4
          (local.set $e (v128.load32_splat (i32.add (local.get $sc) (i32.shl (local.get $s) (i32.const 2)))))
          (local.set $a0 (f32x4.relaxed_madd (local.get $e) (v128.load (local.get $vp)) (local.get $a0)))
          (local.set $a1 (f32x4.relaxed_madd (local.get $e) (v128.load offset=16 (local.get $vp)) (local.get $a1)))
          (local.set $a2 (f32x4.relaxed_madd (local.get $e) (v128.load offset=32 (local.get $vp)) (local.get $a2)))
          (local.set $a3 (f32x4.relaxed_madd (local.get $e) (v128.load offset=48 (local.get $vp)) (local.get $a3)))
          (local.set $vp (i32.add (local.get $vp) (local.get $kvs)))
          (local.set $s (i32.add (local.get $s) (i32.const 1)))
          (br_if $slots4 (i32.lt_u (local.get $s) (local.get $n))))
        (v128.store (i32.add (local.get $o) (local.get $i)) (f32x4.mul (local.get $a0) (local.get $inv)))
        (v128.store offset=16 (i32.add (local.get $o) (local.get $i)) (f32x4.mul (local.get $a1) (local.get $inv)))
        (v128.store offset=32 (i32.add (local.get $o) (local.get $i)) (f32x4.mul (local.get $a2) (local.get $inv)))
        (v128.store offset=48 (i32.add (local.get $o) (local.get $i)) (f32x4.mul (local.get $a3) (local.get $inv)))
        (local.set $i (i32.add (local.get $i) (i32.const 64)))
        (br $cols4)))
    (block $narrow
      (loop $cols1
        (br_if $narrow (i32.ge_u (local.get $i) (i32.shl (local.get $dh4) (i32.const 2))))
        (local.set $a0 (v128.const i32x4 0 0 0 0))
        (local.set $vp (i32.add (local.get $v) (local.get $i)))
        (local.set $s (i32.const 0))
        (loop $slots1
          (local.set $a0 (f32x4.relaxed_madd
            (v128.load32_splat (i32.add (local.get $sc) (i32.shl (local.get $s) (i32.const 2))))
            (v128.load (local.get $vp)) (local.get $a0)))
          (local.set $vp (i32.add (local.get $vp) (local.get $kvs)))
          (local.set $s (i32.add (local.get $s) (i32.const 1)))
          (br_if $slots1 (i32.lt_u (local.get $s) (local.get $n))))
        (v128.store (i32.add (local.get $o) (local.get $i)) (f32x4.mul (local.get $a0) (local.get $inv)))
        (local.set $i (i32.add (local.get $i) (i32.const 16)))
        (br $cols1))))

  ;; ---- per-row ops on activations, in float64 like reference/ (so their results are the reference's, bitwise) ----

  ;; out[i] = x[i] · (1 / sqrt(Σx²/D + eps)) · w[i] for one row of D (reference/rmsnorm.ts, same operation order).
  (func $rmsnorm (export "rmsnorm") (param $x i32) (param $w i32) (param $out i32) (param $D i32) (param $eps f64)
    (local $i i32) (local $ss f64) (local $v f64) (local $scale f64)
    (block $done
      (loop $sum
        (br_if $done (i32.ge_u (local.get $i) (local.get $D)))
        (local.set $v (f64.promote_f32 (f32.load (i32.add (local.get $x) (i32.shl (local.get $i) (i32.const 2))))))
        (local.set $ss (f64.add (local.get $ss) (f64.mul (local.get $v) (local.get $v))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $sum)))
    (local.set $scale (f64.div (f64.const 1)
      (f64.sqrt (f64.add (f64.div (local.get $ss) (f64.convert_i32_u (local.get $D))) (local.get $eps)))))
    (local.set $i (i32.const 0))
    (block $done2
      (loop $scaled
        (br_if $done2 (i32.ge_u (local.get $i) (local.get $D)))
        (f32.store (i32.add (local.get $out) (i32.shl (local.get $i) (i32.const 2)))
          (f32.demote_f64 (f64.mul
            (f64.mul (f64.promote_f32 (f32.load (i32.add (local.get $x) (i32.shl (local.get $i) (i32.const 2))))) (local.get $scale))
            (f64.promote_f32 (f32.load (i32.add (local.get $w) (i32.shl (local.get $i) (i32.const 2))))))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $scaled))))

  ;; HF rotate_half RoPE of one token's `heads` heads of Dh (x → out): pair (i, i + Dh/2) rotates by the angle
  ;; whose cos and sin (f64) are at cs[i] and cs[Dh/2 + i] (reference/rope.ts, same operation order).
  (func $rope (export "rope") (param $x i32) (param $out i32) (param $heads i32) (param $Dh i32) (param $cs i32)
    (local $h i32) (local $i i32) (local $half i32) (local $o i32) (local $a f64) (local $b f64) (local $c f64) (local $s f64)
    (local.set $half (i32.shr_u (local.get $Dh) (i32.const 1)))
    (block $heads
      (loop $head
        (br_if $heads (i32.ge_u (local.get $h) (local.get $heads)))
        (local.set $o (i32.shl (i32.mul (local.get $h) (local.get $Dh)) (i32.const 2)))
        (local.set $i (i32.const 0))
        (block $pairs
          (loop $pair
            (br_if $pairs (i32.ge_u (local.get $i) (local.get $half)))
            (local.set $a (f64.promote_f32 (f32.load (i32.add (i32.add (local.get $x) (local.get $o)) (i32.shl (local.get $i) (i32.const 2))))))
            (local.set $b (f64.promote_f32 (f32.load (i32.add (i32.add (local.get $x) (local.get $o)) (i32.shl (i32.add (local.get $i) (local.get $half)) (i32.const 2))))))
            (local.set $c (f64.load (i32.add (local.get $cs) (i32.shl (local.get $i) (i32.const 3)))))
            (local.set $s (f64.load (i32.add (local.get $cs) (i32.shl (i32.add (local.get $i) (local.get $half)) (i32.const 3)))))
            (f32.store (i32.add (i32.add (local.get $out) (local.get $o)) (i32.shl (local.get $i) (i32.const 2)))
              (f32.demote_f64 (f64.sub (f64.mul (local.get $a) (local.get $c)) (f64.mul (local.get $b) (local.get $s)))))
            (f32.store (i32.add (i32.add (local.get $out) (local.get $o)) (i32.shl (i32.add (local.get $i) (local.get $half)) (i32.const 2)))
              (f32.demote_f64 (f64.add (f64.mul (local.get $b) (local.get $c)) (f64.mul (local.get $a) (local.get $s)))))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $pair)))
        (local.set $h (i32.add (local.get $h) (i32.const 1)))
        (br $head))))

  ;; out[i] = a[i] + b[i] for i < n4 (a multiple of 4), each sum rounded once from float64 (reference/add.ts).
  (func $add (export "add") (param $a i32) (param $b i32) (param $out i32) (param $n4 i32)
    (local $i i32) (local $va v128) (local $vb v128)
    (block $done
      (loop $l
        (br_if $done (i32.ge_u (local.get $i) (local.get $n4)))
        (local.set $va (v128.load (i32.add (local.get $a) (i32.shl (local.get $i) (i32.const 2)))))
        (local.set $vb (v128.load (i32.add (local.get $b) (i32.shl (local.get $i) (i32.const 2)))))
        (v128.store (i32.add (local.get $out) (i32.shl (local.get $i) (i32.const 2)))
          (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23
            (f32x4.demote_f64x2_zero (f64x2.add (f64x2.promote_low_f32x4 (local.get $va)) (f64x2.promote_low_f32x4 (local.get $vb))))
            (f32x4.demote_f64x2_zero (f64x2.add
              (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $va) (local.get $va)))
              (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $vb) (local.get $vb)))))))
        (local.set $i (i32.add (local.get $i) (i32.const 4)))
        (br $l))))

  ;; ---- read-bandwidth probe: each chunk sums its bytes as f32x4, like the kernels stream weights ----
  ;; ARG 0 base  1 chunk bytes (multiple of 64)  2 sink (one f32 per chunk, so the loads are not dead)
  (func $probeChunk (param $idx i32)
    (local $p i32) (local $end i32) (local $a0 v128) (local $a1 v128) (local $a2 v128) (local $a3 v128)
    (local.set $p (i32.add (call $arg (i32.const 0)) (i32.mul (local.get $idx) (call $arg (i32.const 1)))))
    (local.set $end (i32.add (local.get $p) (call $arg (i32.const 1))))
    (loop $l
      (local.set $a0 (f32x4.add (local.get $a0) (v128.load (local.get $p))))
      (local.set $a1 (f32x4.add (local.get $a1) (v128.load offset=16 (local.get $p))))
      (local.set $a2 (f32x4.add (local.get $a2) (v128.load offset=32 (local.get $p))))
      (local.set $a3 (f32x4.add (local.get $a3) (v128.load offset=48 (local.get $p))))
      (local.set $p (i32.add (local.get $p) (i32.const 64)))
      (br_if $l (i32.lt_u (local.get $p) (local.get $end))))
    (f32.store (i32.add (call $arg (i32.const 2)) (i32.shl (local.get $idx) (i32.const 2)))
      (call $finish (f32x4.add (f32x4.add (local.get $a0) (local.get $a1)) (f32x4.add (local.get $a2) (local.get $a3))))))
)
