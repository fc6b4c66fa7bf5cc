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
;; Activations (x, outputs, attention inputs) live in a scratch region above the weights, copied per call
;; by the TS side. x is (T, tiles·64) f32 row-major (zero padded); matmul output is (T, rows computed) f32
;; with a token stride rounded up to 16 outputs (64 bytes).

(module
  (import "env" "memory" (memory 1 65536 shared))

  ;; ---- control block (byte addresses; layout.ts has the same numbers) ----
  ;; 64  CLAIM      (seq << 16) | next chunk index; index 0xffff = closed
  ;; 128 COMPLETED  chunks finished in the current job
  ;; 192 OP         job kind: 0 matmul, 1 attention, 2 read probe, 3 transposed rows (sparse down_proj), 4 gather
  ;; 196 NCHUNKS    chunks in the current job (≤ 65534)
  ;; 200 + 4i       ARG i

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
    (block $gather
      (block $transposed
        (block $probe
          (block $attention
            (block $matmul
              (br_table $matmul $attention $probe $transposed $gather (i32.load (i32.const 192))))
            (call $matmulChunk (local.get $idx))
            (return))
          (call $attentionItem (local.get $idx))
          (return))
        (call $probeChunk (local.get $idx))
        (return))
      (call $transposedChunk (local.get $idx))
      (return))
    (call $gatherChunk (local.get $idx)))

  ;; ---- gather: coarse sparsity's per-request copies of selected rows or columns (layout.ts) ----
  ;; ARG 0 axis (0 rows, 1 columns)  1 element bytes (2 or 4)  2 src matrix  3 dst matrix  4 rows: the
  ;;     selected source rows (i32 per output row); columns: source element offset of each kept column
  ;;     inside a row  5 columns: destination element offset of each kept column  6 rows to write (rows:
  ;;     the selected count; columns: the matrix's rows)  7 rows per chunk  8 tiles of src  9 tiles of dst
  ;;     10 columns: kept column count
  ;; rows: each output row's runs are copied whole (v128 by v128). columns: each row's last run is zeroed
  ;; (its padding columns), then the kept elements are copied one by one. Padding rows: the TS side.
  (func $gatherChunk (param $idx i32)
    (local $i i32) (local $i1 i32) (local $eb i32) (local $run i32) (local $src i32) (local $dst i32)
    (local $s i32) (local $d i32) (local $j i32) (local $k i32) (local $n i32) (local $so i32) (local $do i32)
    (local.set $eb (call $arg (i32.const 1)))
    (local.set $run (i32.shl (local.get $eb) (i32.const 6))) ;; 64 elements per run
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
  (func $pick (param $sel i32) (param $i i32) (result i32)
    (if (result i32) (local.get $sel)
      (then (i32.load (i32.add (local.get $sel) (i32.shl (local.get $i) (i32.const 2)))))
      (else (local.get $i))))

  ;; Address of row r's first run: 16-bit storage (runs of 128 B, group-tiles of 512 B).
  (func $row16 (param $w i32) (param $r i32) (param $tiles i32) (result i32)
    (i32.add (local.get $w) (i32.add
      (i32.mul (i32.shr_u (local.get $r) (i32.const 2)) (i32.shl (local.get $tiles) (i32.const 9)))
      (i32.shl (i32.and (local.get $r) (i32.const 3)) (i32.const 7)))))

  ;; Address of row r's first run: f32 storage (runs of 256 B, group-tiles of 1 KiB).
  (func $row32 (param $w i32) (param $r i32) (param $tiles i32) (result i32)
    (i32.add (local.get $w) (i32.add
      (i32.mul (i32.shr_u (local.get $r) (i32.const 2)) (i32.shl (local.get $tiles) (i32.const 10)))
      (i32.shl (i32.and (local.get $r) (i32.const 3)) (i32.const 8)))))

  ;; (a0 + a1) + (a2 + a3): the one final reduction of every matmul row.
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

  ;; IEEE half → f32 for the half in the HIGH 16 bits of each i32 lane (low bits ignored). Table-free: the
  ;; 15 magnitude bits moved to the f32 position (>> 3) and scaled by 2^112, which also turns f16
  ;; subnormals into the right f32 normals; exponent 31 (inf/NaN) forced to f32 exponent 255; sign copied.
  (func $f16hi (param $t v128) (result v128)
    (local $m v128)
    (local.set $m (i32x4.shr_u (v128.and (local.get $t) (v128.const i32x4 0x7fff0000 0x7fff0000 0x7fff0000 0x7fff0000)) (i32.const 3)))
    (v128.or
      (v128.or
        (f32x4.mul (local.get $m) (v128.const f32x4 0x1p112 0x1p112 0x1p112 0x1p112))
        (v128.and (i32x4.ge_u (local.get $m) (v128.const i32x4 0x0f800000 0x0f800000 0x0f800000 0x0f800000))
                  (v128.const i32x4 0x7f800000 0x7f800000 0x7f800000 0x7f800000)))
      (v128.and (local.get $t) (v128.const i32x4 0x80000000 0x80000000 0x80000000 0x80000000))))

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

  ;; ---- exp, softmax-free elementwise ops ----

;; e^x per lane (Cephes expf: x = n·ln2 + r, |r| ≤ ln2/2, degree-6 polynomial; about 1 ulp).
  ;; Above ln(FLT_MAX) = 88.7228 the result is +inf, like an f32 exp. Below -86.5 it is e^-86.5 ≈ 2.7e-38
  ;; instead of a subnormal or 0 (harmless next to the 1 of a softmax or silu, and it keeps 2^n normal).
  ;; NaN propagates.
  (func $exp4 (param $x0 v128) (result v128)
    (local $x v128) (local $n v128) (local $r v128) (local $p v128)
    (local.set $x (f32x4.min (f32x4.max (local.get $x0) (v128.const f32x4 -86.5 -86.5 -86.5 -86.5))
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
  ;; ARG 0 q (T rows of H·dh4)  1 keys (S, Hkv, dh4)  2 values (S, Hkv, dh4)  3 out (T rows of H·dh4)
  ;;     4 scores (items × heads per item × spad f32)  5 positions (T i32)  6 H  7 group = H / Hkv  8 dh4
  ;;     (head dim padded to 4)  9 kv stride (bytes per slot = Hkv·dh4·4)  10 scale (f32 bits)  11 spad (≥ S,
  ;;     mult of 4)  12 mask: 0 = causal (query t sees slots 0..positions[t]), else (T, S) bytes, 1 = visible
  ;;     (tree attention: query t sees exactly its row's slots)  13 S  14 q row stride (bytes)  15 out row
  ;;     stride  16 heads per item (G: a divisor of the group)
  ;; An item's G query heads read the same KV head: each key slot is loaded once and scored against all G
  ;; queries (slot-major), so a long context streams K once per item instead of once per head; then each head's
  ;; softmax and value sum ($attendHead). Per head the arithmetic is the same whatever G: scores sᵢ = (q·kᵢ)·scale
  ;; in f32 (madd over the head's f32x4 lanes, then (l0 + l1) + (l2 + l3)), max-subtracted exp, f32x4 sums,
  ;; out = (Σ eᵢ vᵢ) · (1 / Σ eᵢ). A masked slot's score is -inf and its weight exactly 0.
  (func $attentionItem (param $item i32)
    (local $H i32) (local $G i32) (local $dh4 i32) (local $kvs i32) (local $t i32) (local $h0 i32) (local $g i32)
    (local $n i32) (local $n4 i32) (local $spad i32) (local $q i32) (local $qh i32) (local $k i32) (local $v i32)
    (local $sc i32) (local $s i32) (local $i i32) (local $kp i32) (local $mrow i32) (local $acc v128) (local $scale f32)
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
    ;; the KV head of the block's heads (h0 / group), at byte offset kvh·dh4·4 inside each slot
    (local.set $k (i32.add (call $arg (i32.const 1))
      (i32.shl (i32.mul (i32.div_u (local.get $h0) (call $arg (i32.const 7))) (local.get $dh4)) (i32.const 2))))
    (local.set $v (i32.add (call $arg (i32.const 2)) (i32.sub (local.get $k) (call $arg (i32.const 1)))))
    (local.set $sc (i32.add (call $arg (i32.const 4)) (i32.shl (i32.mul (i32.mul (local.get $item) (local.get $G)) (local.get $spad)) (i32.const 2))))

    ;; scores, slot by slot: head g's at sc + (g·spad + s)·4
    (local.set $kp (local.get $k))
    (local.set $s (i32.const 0))
    (loop $slots
      (local.set $g (i32.const 0))
      (loop $heads
        (if (i32.and (i32.ne (local.get $mrow) (i32.const 0))
                     (i32.eqz (i32.load8_u (i32.add (local.get $mrow) (local.get $s)))))
          (then (f32.store (i32.add (local.get $sc) (i32.shl (i32.add (i32.mul (local.get $g) (local.get $spad)) (local.get $s)) (i32.const 2))) (f32.const -inf)))
          (else
            (local.set $qh (i32.add (local.get $q) (i32.shl (i32.mul (local.get $g) (local.get $dh4)) (i32.const 2))))
            (local.set $acc (v128.const i32x4 0 0 0 0))
            (local.set $i (i32.const 0))
            (loop $dot
              (local.set $acc (f32x4.relaxed_madd
                (v128.load (i32.add (local.get $qh) (local.get $i))) (v128.load (i32.add (local.get $kp) (local.get $i))) (local.get $acc)))
              (local.set $i (i32.add (local.get $i) (i32.const 16)))
              (br_if $dot (i32.lt_u (local.get $i) (i32.shl (local.get $dh4) (i32.const 2)))))
            (f32.store (i32.add (local.get $sc) (i32.shl (i32.add (i32.mul (local.get $g) (local.get $spad)) (local.get $s)) (i32.const 2)))
              (f32.mul (local.get $scale)
                (f32.add
                  (f32.add (f32x4.extract_lane 0 (local.get $acc)) (f32x4.extract_lane 1 (local.get $acc)))
                  (f32.add (f32x4.extract_lane 2 (local.get $acc)) (f32x4.extract_lane 3 (local.get $acc))))))))
        (local.set $g (i32.add (local.get $g) (i32.const 1)))
        (br_if $heads (i32.lt_u (local.get $g) (local.get $G))))
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
    (local $a0 v128) (local $a1 v128) (local $a2 v128) (local $a3 v128)
    (local.set $max (f32.const -inf))
    (local.set $s (i32.const 0))
    (loop $maxes
      (local.set $max (f32.max (local.get $max) (f32.load (i32.add (local.get $sc) (i32.shl (local.get $s) (i32.const 2))))))
      (local.set $s (i32.add (local.get $s) (i32.const 1)))
      (br_if $maxes (i32.lt_u (local.get $s) (local.get $n))))
    ;; slots n..n4 hold whatever the scratch held: set them to -inf so their weights come out exactly 0
    (local.set $s (local.get $n))
    (block $padded
      (loop $pad
        (br_if $padded (i32.ge_u (local.get $s) (local.get $n4)))
        (f32.store (i32.add (local.get $sc) (i32.shl (local.get $s) (i32.const 2))) (f32.const -inf))
        (local.set $s (i32.add (local.get $s) (i32.const 1)))
        (br $pad)))
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

    ;; out[i..i+16) = Σ_s e_s · v_s[i..i+16), four f32x4 columns at a time, then single columns
    (local.set $i (i32.const 0))
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
