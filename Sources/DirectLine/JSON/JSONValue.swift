/// A JSON document as the library sees it.
///
/// Objects keep their members in document order and numbers keep their exact
/// source text, so an activity the caller wrote reaches the service unchanged
/// apart from the fields the library adds on purpose.
enum JSONValue: Equatable, Sendable {
    case null
    case bool(Bool)
    /// The number's text, already checked against the JSON number grammar.
    case number(String)
    case string(String)
    case array([JSONValue])
    case object(JSONObject)
    /// Checked text read in place (pages of activities, `RawJSON`): written
    /// out as it is; the accessors above see none of it.
    case raw(RawJSON)

    static func integer<T: BinaryInteger>(_ value: T) -> JSONValue { .number(String(value)) }

    var objectValue: JSONObject? {
        if case .object(let object) = self { return object }
        return nil
    }

    var stringValue: String? {
        if case .string(let string) = self { return string }
        return nil
    }

    var boolValue: Bool? {
        if case .bool(let value) = self { return value }
        return nil
    }

    var arrayValue: [JSONValue]? {
        if case .array(let array) = self { return array }
        return nil
    }

    /// The number as an integer, when it is a whole number that fits.
    var int64Value: Int64? {
        guard case .number(let text) = self else { return nil }
        return Int64(text)
    }

    var isNull: Bool { self == .null }

    /// The JSON type's name, for error messages.
    var typeName: String {
        switch self {
        case .null: "null"
        case .bool: "boolean"
        case .number: "number"
        case .string: "string"
        case .array: "array"
        case .object: "object"
        case .raw(let raw): raw.isObject ? "object" : raw.isArray ? "array" : "value"
        }
    }
}

/// A JSON object with members in insertion order and unique keys.
struct JSONObject: Equatable, Sendable {
    private(set) var members: [(key: String, value: JSONValue)] = []

    init() {}

    init(_ members: [(String, JSONValue)]) {
        for (key, value) in members { self[key] = value }
    }

    static func == (lhs: JSONObject, rhs: JSONObject) -> Bool {
        lhs.members.count == rhs.members.count
            && zip(lhs.members, rhs.members).allSatisfy { $0.key == $1.key && $0.value == $1.value }
    }

    var keys: [String] { members.map(\.key) }
    var isEmpty: Bool { members.isEmpty }
    var count: Int { members.count }

    /// Appends a member whose key the caller knows is not present yet.
    mutating func appendUnique(_ key: String, _ value: JSONValue) {
        members.append((key, value))
    }

    /// Reads a member; assigning nil removes it, assigning a new key appends it.
    subscript(key: String) -> JSONValue? {
        get { members.first { $0.key == key }?.value }
        set {
            let index = members.firstIndex { $0.key == key }
            switch (index, newValue) {
            case let (index?, value?): members[index].value = value
            case let (index?, nil): members.remove(at: index)
            case let (nil, value?): members.append((key, value))
            case (nil, nil): break
            }
        }
    }

    func contains(_ key: String) -> Bool { members.contains { $0.key == key } }
}
