;; Functions that return output regions the host must refuse.
(module
  (memory (export "memory") 1)
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

  ;; Far past the end of memory.
  (func (export "far_pointer") (param $ptr i32) (param $len i32) (result i64)
    (call $pack (i32.const -65536) (i32.const 16)))

  ;; Starts inside memory and runs past its end.
  (func (export "straddling") (param $ptr i32) (param $len i32) (result i64)
    (call $pack (i32.sub (i32.shl (memory.size) (i32.const 16)) (i32.const 8)) (i32.const 16)))

  ;; Claims 4 GiB - 1 bytes of output.
  (func (export "huge_length") (param $ptr i32) (param $len i32) (result i64)
    (call $pack (i32.const 0) (i32.const -1))))
