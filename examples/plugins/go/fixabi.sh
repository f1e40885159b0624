#!/usr/bin/env bash
# Makes wit-bindgen-go's output build with the standard Go toolchain: its go:wasmimport and
# go:wasmexport functions take pointers to Go types (strings, generic options and lists)
# that only TinyGo accepts there; Go accepts unsafe.Pointer, so those become unsafe.Pointer
# and their call sites convert. The memory layout is the same.
set -euo pipefail
for f in "$@"; do
  perl -0pi -e '
    sub loosen { my $p = shift; $p =~ s/(\w+) \*(?!uint8\b)(?:\[\d*\])?[\w.]+(\[(?:[^\[\]]++|(?-1))*\])?/$1 unsafe.Pointer/g; $p }
    s{^(func wasmimport_\w+\()(.*?)(result \*[^)]*)?\)$}{
      $1 . loosen($2) . (defined $3 ? "result unsafe.Pointer" : "") . ")"
    }meg;
    s{^(func wasmexport_\w+\()([^)]*)\) \(result \*[^)]*\)}{$1 . loosen($2) . ") (result unsafe.Pointer)"}meg;
    s{\bresult = &result_\b}{result = unsafe.Pointer(&result_)}g;
    s{(wasmimport_\w+\()(.*)\)$}{
      my ($call, $args) = ($1, $2);
      $args =~ s/(^|, )&(\w+)/$1unsafe.Pointer(&$2)/g;
      $args =~ s/\(\*(?!uint8\))(?:[\w.]+)(\[(?:[^\[\]]++|(?-1))*\])?\)\((\w+)\)/unsafe.Pointer($2)/g;
      "$call$args)"
    }meg;
    $_ .= "\nvar _ cm.HostLayout\n" if /"go.bytecodealliance.org\/cm"/;
    unless (/"unsafe"/) { s{^(package \w+\n)}{$1\nimport "unsafe"\n}m; $_ .= "\nvar _ unsafe.Pointer\n"; }
  ' "$f"
done
