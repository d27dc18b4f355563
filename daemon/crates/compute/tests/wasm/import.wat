;; Imports a host function: must be rejected, modules get no ambient capabilities.
(module
  (import "env" "log" (func $log (param i32 i32)))
  (memory (export "memory") 1)
  (func (export "mehr_alloc") (param $len i32) (result i32)
    (i32.const 1024))
  (func (export "echo") (param $ptr i32) (param $len i32) (result i64)
    (call $log (local.get $ptr) (local.get $len))
    (i64.const 0)))
