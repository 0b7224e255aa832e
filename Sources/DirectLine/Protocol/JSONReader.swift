/// Typed, strict access to a JSON object supplied by the caller, producing
/// `DL_ERR_INVALID_ARGUMENT` errors that name the offending member.
struct JSONReader {
    /// The caller's JSON text (`name` is the argument, for errors), refused
    /// unless it is UTF-8 and well-formed JSON.
    static func parse(_ bytes: UnsafeBufferPointer<UInt8>, name: String) throws(DirectLineError) -> JSONValue {
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw .invalidArgument("\(name) is not valid UTF-8")
        }
        do {
            return try JSONParser.parse(text)
        } catch {
            throw .invalidArgument("\(name) is not valid JSON: \(error.message) at byte \(error.offset)")
        }
    }

    let object: JSONObject
    /// Where the object sits in the caller's input, e.g. "config" or "config.retry".
    let context: String

    init(_ value: JSONValue, context: String) throws(DirectLineError) {
        guard let object = value.objectValue else {
            throw .invalidArgument("\(context) must be a JSON object, not \(value.typeName)")
        }
        self.object = object
        self.context = context
    }

    /// Refuses members this reader does not know: a typo must not be ignored.
    func rejectUnknownKeys(_ known: Set<String>) throws(DirectLineError) {
        if let unknown = object.keys.first(where: { !known.contains($0) }) {
            let list = known.sorted().joined(separator: ", ")
            throw .invalidArgument("\(context) has an unknown key \"\(unknown)\" (known: \(list))")
        }
    }

    private func present(_ key: String) -> JSONValue? {
        guard let value = object[key], !value.isNull else { return nil }
        return value
    }

    func string(_ key: String) throws(DirectLineError) -> String? {
        guard let value = present(key) else { return nil }
        guard let string = value.stringValue else {
            throw .invalidArgument("\(context).\(key) must be a string, not \(value.typeName)")
        }
        return string
    }

    func bool(_ key: String) throws(DirectLineError) -> Bool? {
        guard let value = present(key) else { return nil }
        guard let bool = value.boolValue else {
            throw .invalidArgument("\(context).\(key) must be true or false, not \(value.typeName)")
        }
        return bool
    }

    func integer(_ key: String, in range: ClosedRange<Int64>) throws(DirectLineError) -> Int64? {
        guard let value = present(key) else { return nil }
        guard let number = value.int64Value, range.contains(number) else {
            throw .invalidArgument("\(context).\(key) must be a whole number from \(range.lowerBound) to \(range.upperBound)")
        }
        return number
    }

    func object(_ key: String) throws(DirectLineError) -> JSONReader? {
        guard let value = present(key) else { return nil }
        return try JSONReader(value, context: "\(context).\(key)")
    }
}
