// swift-tools-version: 6.0
import Foundation
import PackageDescription

/// The SONAME's major version, read from the library's one version source
/// (Sources/DirectLine/Support/LibraryVersion.swift, which the Makefile, the
/// header generator and the Python package read too), so it cannot drift.
let majorVersion: String = {
    let source = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Sources/DirectLine/Support/LibraryVersion.swift")
    guard let text = try? String(contentsOf: source, encoding: .utf8),
          let match = try? Regex(#"static let major = (\d+)"#).firstMatch(in: text),
          let major = match.output[1].substring
    else {
        fatalError("Package.swift: cannot read `static let major = N` from \(source.path)")
    }
    return String(major)
}()

// libdirectline: a Direct Line client exported as a C ABI.
// The library needs nothing but libcurl and the Swift toolchain.
let package = Package(
    name: "libdirectline",
    products: [
        .library(name: "directline", type: .dynamic, targets: ["DirectLine"]),
    ],
    targets: [
        .systemLibrary(
            name: "CCurl",
            pkgConfig: "libcurl",
            providers: [.apt(["libcurl4-openssl-dev"])]
        ),
        // Zeroing on release: free() and realloc() of everything linked into
        // the shared object wipe the block first (Sources/CWipe/wipe.c).
        // DWARF 4 for the C targets: Debian 12's valgrind (3.19) cannot read
        // the DWARF 5 clang writes once two C units carry it ("possibly
        // corrupted debuginfo"), and scripts/memcheck.sh runs under it.
        .target(name: "CWipe", cSettings: [.unsafeFlags(["-gdwarf-4"])]),
        // C glue for GNU extensions Swift's Glibc module does not show (dladdr).
        .target(name: "CSystem", cSettings: [.unsafeFlags(["-gdwarf-4"])]),
        .target(
            name: "DirectLine",
            dependencies: ["CCurl", "CWipe", "CSystem"],
            exclude: ["exports.map"],
            linkerSettings: [
                // Export only the dl_* C ABI; the Swift runtime and our own
                // Swift symbols stay local to the shared object. The SONAME
                // carries the major version (`make` links that name to the
                // built file; `make install` lays out the usual links).
                // -z nodelete: dlclose() never unmaps the library. Its token
                // refresh thread, libcurl's handles and the Swift runtime's
                // state outlive any one caller, so unmapping them under a
                // running thread would crash the host (Tests/c/test_unload.c).
                .unsafeFlags(["-Xlinker", "--version-script=Sources/DirectLine/exports.map",
                              "-Xlinker", "-soname=libdirectline.so.\(majorVersion)",
                              "-Xlinker", "-z", "-Xlinker", "nodelete",
                              "-Xlinker", "--wrap=free", "-Xlinker", "--wrap=realloc"]),
            ]
        ),
        .testTarget(name: "DirectLineTests", dependencies: ["DirectLine"]),
    ]
)
