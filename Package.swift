// swift-tools-version: 6.0
import PackageDescription

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
        .target(
            name: "DirectLine",
            dependencies: ["CCurl"],
            exclude: ["exports.map"],
            linkerSettings: [
                // Export only the dl_* C ABI; the Swift runtime and our own
                // Swift symbols stay local to the shared object. The SONAME
                // carries the major version (`make` links that name to the
                // built file; `make install` lays out the usual links).
                .unsafeFlags(["-Xlinker", "--version-script=Sources/DirectLine/exports.map",
                              "-Xlinker", "-soname=libdirectline.so.0"]),
            ]
        ),
        .testTarget(name: "DirectLineTests", dependencies: ["DirectLine"]),
    ]
)
