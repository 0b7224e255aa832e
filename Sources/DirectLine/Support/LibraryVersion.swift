/// The library's version. `scripts/generate_header.py` reads these three
/// numbers to write the DL_VERSION_* macros, so the header and
/// `dl_version_number()` cannot disagree.
enum LibraryVersion {
    static let major = 0
    static let minor = 2
    static let patch = 0

    static let string = "\(major).\(minor).\(patch)"
    static let number = UInt32(major * 10000 + minor * 100 + patch)
}
