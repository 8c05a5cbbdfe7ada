/// How the event codec writes JSON scalars into a byte buffer, with the spellings Foundation's
/// `JSONEncoder` uses where it matters to a reader: shortest round-tripping numbers, whole
/// doubles without `.0`, and `\uXXXX` for control characters.
extension Array where Element == UInt8 {
    /// Appends `text` as a JSON string, quotes included.
    mutating func appendJSONString(_ text: String) {
        append(UInt8(ascii: "\""))
        var text = text
        // Native Swift strings are contiguous UTF-8; a bridged one is made so once.
        text.withUTF8 { utf8 in
            var clean = 0  // start of the bytes not yet copied
            for index in 0..<utf8.count {
                let byte = utf8[index]
                guard byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") else { continue }
                append(contentsOf: UnsafeBufferPointer(rebasing: utf8[clean..<index]))
                appendEscaped(byte)
                clean = index + 1
            }
            append(contentsOf: UnsafeBufferPointer(rebasing: utf8[clean...]))
        }
        append(UInt8(ascii: "\""))
    }

    private mutating func appendEscaped(_ byte: UInt8) {
        append(UInt8(ascii: "\\"))
        switch byte {
        case UInt8(ascii: "\""): append(UInt8(ascii: "\""))
        case UInt8(ascii: "\\"): append(UInt8(ascii: "\\"))
        case 0x08: append(UInt8(ascii: "b"))
        case 0x0C: append(UInt8(ascii: "f"))
        case 0x0A: append(UInt8(ascii: "n"))
        case 0x0D: append(UInt8(ascii: "r"))
        case 0x09: append(UInt8(ascii: "t"))
        default:
            // Control characters: \u00XX, in lowercase hexadecimal as Foundation writes them.
            append(UInt8(ascii: "u"))
            append(UInt8(ascii: "0"))
            append(UInt8(ascii: "0"))
            append(UInt8(ascii: "0") + byte >> 4)
            let low = byte & 0xF
            append(low < 10 ? UInt8(ascii: "0") + low : UInt8(ascii: "a") + low - 10)
        }
    }

    /// Appends an integer in decimal.
    mutating func appendJSONInteger<Value: BinaryInteger>(_ value: Value) {
        if let small = Int64(exactly: value) {
            appendDecimal(small)
        } else {
            append(contentsOf: String(value).utf8)  // beyond 64 bits: rare enough for a String
        }
    }

    private mutating func appendDecimal(_ value: Int64) {
        if value < 0 { append(UInt8(ascii: "-")) }
        var magnitude = value.magnitude
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // up to 20 digits, written backwards
        var count = 0
        Swift.withUnsafeMutableBytes(of: &digits) { buffer in
            repeat {
                buffer[23 - count] = UInt8(ascii: "0") + UInt8(magnitude % 10)
                magnitude /= 10
                count += 1
            } while magnitude > 0
            append(contentsOf: buffer[(24 - count)...])
        }
    }

    /// Appends a finite floating-point number the way Foundation's `JSONEncoder` does: Swift's
    /// shortest round-tripping spelling, without a trailing `.0` (`2`, `0.1`, `1e-07`, `1e+300`).
    mutating func appendJSONFloatingPoint<Value: BinaryFloatingPoint & LosslessStringConvertible>(_ value: Value) {
        var text = value.description
        if text.hasSuffix(".0") { text.removeLast(2) }
        append(contentsOf: text.utf8)
    }
}
