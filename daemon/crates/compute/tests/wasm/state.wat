;; Keeps state in a global and in memory, to show that calls do not share it.
(module
  (memory (export "memory") 1)
  (global $calls (mut i32) (i32.const 0))
  ;; Bump allocator: hands out 8-byte-aligned regions above 1 KiB, growing memory as needed,
  ;; and traps if memory cannot grow.
  (global $heap (mut i32) (i32.const 1024))
  (func $alloc (export "mehr_alloc") (param $len i32) (result i32)
    (local $ptr i32) (local $end i32) (local $needed i32)
    (local.set $ptr (global.get $heap))
    (local.set $end
      (i32.and (i32.add (i32.add (local.get $ptr) (local.get $len)) (i32.const 7)) (i32.const -8)))
    (local.set $needed
      (i32.sub (i32.shr_u (i32.add (local.get $end) (i32.const 65535)) (i32.const 16)) (memory.size)))
    (if (i32.gt_s (local.get $needed) (i32.const 0))
      (then (if (i32.eq (memory.grow (local.get $needed)) (i32.const -1)) (then unreachable))))
    (global.set $heap (local.get $end))
    (local.get $ptr))

  ;; (ptr << 32) | len, the ABI's return value.
  (func $pack (param $ptr i32) (param $len i32) (result i64)
    (i64.or
      (i64.shl (i64.extend_i32_u (local.get $ptr)) (i64.const 32))
      (i64.extend_i32_u (local.get $len))))

  ;; Increments a global and the word at address 16; returns both (4 bytes LE each).
  (func (export "bump") (param $ptr i32) (param $len i32) (result i64)
    (local $out i32)
    (global.set $calls (i32.add (global.get $calls) (i32.const 1)))
    (i32.store (i32.const 16) (i32.add (i32.load (i32.const 16)) (i32.const 1)))
    (local.set $out (call $alloc (i32.const 8)))
    (i32.store (local.get $out) (global.get $calls))
    (i32.store offset=4 (local.get $out) (i32.load (i32.const 16)))
    (call $pack (local.get $out) (i32.const 8))))
