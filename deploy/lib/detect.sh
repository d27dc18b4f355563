# Decisions of deploy/setup.sh, as functions a test can feed (tests/python/test_setup_detect.py).
# Sourced, never run: it defines functions and changes nothing.

# libclang_listed: reads library names or paths on stdin (`ldconfig -p` lines, `ls` output) and
# succeeds when one of them is a libclang that bindgen can load, the way clang-sys searches:
# libclang.so, libclang.so.<n>, libclang-<version>.so, libclang-<version>.so.<n>.
# libclang-cpp.so.* is the C++ interface library, which bindgen cannot use: it does not count.
libclang_listed() {
  grep -Eq '(^|[/[:space:]])libclang(-[0-9][0-9.]*)?\.so(\.[0-9][0-9.]*)?([[:space:]]|$)'
}

# libclang_candidates: prints every shared library where clang-sys looks for libclang:
# $LIBCLANG_PATH, the loader's cache, and the LLVM trees Debian installs. MEHR_SETUP_SYSROOT
# (tests only) puts those trees under another root.
libclang_candidates() {
  local root="${MEHR_SETUP_SYSROOT:-}"
  if [ -n "${LIBCLANG_PATH:-}" ]; then ls -1 "$LIBCLANG_PATH" 2>/dev/null || true; fi
  ldconfig -p 2>/dev/null || /sbin/ldconfig -p 2>/dev/null || true
  ls -1d "$root"/usr/lib/llvm-*/lib/* "$root"/usr/lib/*/libclang* "$root"/usr/lib/libclang* \
    "$root"/usr/local/lib/libclang* 2>/dev/null || true
}

# has_libclang: succeeds when this machine has a libclang bindgen can load.
has_libclang() {
  libclang_candidates | libclang_listed
}

# python_can_make_venvs PYTHON: succeeds when PYTHON can create a venv with pip in it
# (Debian splits ensurepip into python3-venv).
python_can_make_venvs() {
  "$1" -c 'import venv, ensurepip' 2>/dev/null
}
