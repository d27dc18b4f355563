;; Small useful text functions.
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

  ;; The input bytes in reverse order.
  (func (export "reverse") (param $ptr i32) (param $len i32) (result i64)
    (local $out i32) (local $i i32)
    (local.set $out (call $alloc (local.get $len)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $len)))
        (i32.store8
          (i32.add (local.get $out) (local.get $i))
          (i32.load8_u
            (i32.sub (i32.add (local.get $ptr) (local.get $len))
                     (i32.add (local.get $i) (i32.const 1)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (call $pack (local.get $out) (local.get $len)))

  ;; ASCII letters upper-cased, other bytes unchanged, in place.
  (func (export "uppercase") (param $ptr i32) (param $len i32) (result i64)
    (local $i i32) (local $c i32)
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $len)))
        (local.set $c (i32.load8_u (i32.add (local.get $ptr) (local.get $i))))
        (if (i32.lt_u (i32.sub (local.get $c) (i32.const 97)) (i32.const 26))
          (then
            (i32.store8 (i32.add (local.get $ptr) (local.get $i))
                        (i32.sub (local.get $c) (i32.const 32)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (call $pack (local.get $ptr) (local.get $len)))

  ;; Number of words separated by space, tab, CR or LF, as a 4-byte little-endian integer.
  (func (export "word_count") (param $ptr i32) (param $len i32) (result i64)
    (local $i i32) (local $c i32) (local $in_word i32) (local $count i32) (local $space i32)
    (local $out i32)
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $len)))
        (local.set $c (i32.load8_u (i32.add (local.get $ptr) (local.get $i))))
        (local.set $space
          (i32.or
            (i32.or (i32.eq (local.get $c) (i32.const 32)) (i32.eq (local.get $c) (i32.const 9)))
            (i32.or (i32.eq (local.get $c) (i32.const 10)) (i32.eq (local.get $c) (i32.const 13)))))
        (if (local.get $space)
          (then (local.set $in_word (i32.const 0)))
          (else
            (if (i32.eqz (local.get $in_word))
              (then (local.set $count (i32.add (local.get $count) (i32.const 1)))))
            (local.set $in_word (i32.const 1))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (local.set $out (call $alloc (i32.const 4)))
    (i32.store (local.get $out) (local.get $count))
    (call $pack (local.get $out) (i32.const 4)))

  ;; Sum of the input bytes as an 8-byte little-endian integer.
  (func (export "sum") (param $ptr i32) (param $len i32) (result i64)
    (local $i i32) (local $total i64) (local $out i32)
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $len)))
        (local.set $total
          (i64.add (local.get $total)
                   (i64.load8_u (i32.add (local.get $ptr) (local.get $i)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (local.set $out (call $alloc (i32.const 8)))
    (i64.store (local.get $out) (local.get $total))
    (call $pack (local.get $out) (i32.const 8))))
