fn main() {
    brigade_build_support::emit_libtorch_rpath();
}
