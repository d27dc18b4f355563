;; Test module for the daemon's compute tests: small functions with known outputs, and
;; functions that run into each limit of the sandbox.
(module
  (memory (export "memory") 1)
  ;; Bump allocator above 1 KiB; grows memory when needed and traps when it cannot.
  (global $next (mut i32) (i32.const 1024))
  (func $alloc (export "mehr_alloc") (param $len i32) (result i32)
    (local $start i32) (local $end i32) (local $pages i32)
    (local.set $start (global.get $next))
    (local.set $end (i32.add (local.get $start) (local.get $len)))
    (local.set $pages
      (i32.sub (i32.shr_u (i32.add (local.get $end) (i32.const 65535)) (i32.const 16))
               (memory.size)))
    (if (i32.gt_s (local.get $pages) (i32.const 0))
      (then (if (i32.eq (memory.grow (local.get $pages)) (i32.const -1)) (then unreachable))))
    (global.set $next (local.get $end))
    (local.get $start))

  (func $result (param $ptr i32) (param $len i32) (result i64)
    (i64.or (i64.shl (i64.extend_i32_u (local.get $ptr)) (i64.const 32))
            (i64.extend_i32_u (local.get $len))))

  ;; The input, unchanged.
  (func (export "echo") (param $ptr i32) (param $len i32) (result i64)
    (call $result (local.get $ptr) (local.get $len)))

  ;; The input bytes in reverse order.
  (func (export "reverse") (param $ptr i32) (param $len i32) (result i64)
    (local $out i32) (local $i i32)
    (local.set $out (call $alloc (local.get $len)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $len)))
        (i32.store8 (i32.add (local.get $out) (local.get $i))
          (i32.load8_u (i32.sub (i32.add (local.get $ptr) (local.get $len))
                                (i32.add (local.get $i) (i32.const 1)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (call $result (local.get $out) (local.get $len)))

  ;; Loops forever: stopped by fuel or by the deadline.
  (func (export "spin") (param $ptr i32) (param $len i32) (result i64)
    (loop $forever (br $forever))
    (i64.const 0))

  ;; Traps with `unreachable`.
  (func (export "fail") (param $ptr i32) (param $len i32) (result i64)
    unreachable)

  ;; Grows memory one page at a time until refused, then traps.
  (func (export "hog") (param $ptr i32) (param $len i32) (result i64)
    (loop $more
      (br_if $more (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))
    unreachable))
