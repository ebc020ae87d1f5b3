# valgrind_filter.awk: used by tests/e2e/valgrind.sh.
# Prints the definitely-lost records whose first frame past the allocator is in mdiff's sources
# (frames with debug info "(file.c:N)" under src/ or tests/ — Debian's libraries carry none).
/definitely lost in loss record/ { inrec = 1; rec = $0 "\n"; decided = 0; ours = 0; next }
inrec && /^==[0-9]+== *$/ { if (ours) { printf "%s", rec; n++ } inrec = 0; next }
inrec {
    rec = rec $0 "\n"
    if (!decided && ($0 ~ /(at|by) 0x/)) {
        if ($0 ~ /: (malloc|calloc|realloc|strdup|strndup|aligned_alloc|posix_memalign|memalign) /) next
        decided = 1
        if ($0 ~ /\((common|config|rng|ckpt|dist|image|optim|sample|train|open|read|loader|sources|write|graph|layers|mlp|model|unet|attention|conv|elementwise|gemm|misc|norm|schedule|samplers|mdiff-[a-z]+)\.c:[0-9]+\)/) ours = 1
    }
}
END { print n + 0 " definite leak(s) from mdiff's code" }
