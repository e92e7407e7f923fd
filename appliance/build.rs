//! Detect a system RocksDB (`ROCKSDB_LIB_DIR`, e.g. Debian's librocksdb-dev 7.8)
//! so a shim can supply the one C symbol it lacks; the bundled build needs nothing.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(vigil_system_rocksdb)");
    println!("cargo:rerun-if-env-changed=ROCKSDB_LIB_DIR");
    if std::env::var_os("ROCKSDB_LIB_DIR").is_some() {
        println!("cargo:rustc-cfg=vigil_system_rocksdb");
    }
}
