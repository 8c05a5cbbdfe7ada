import Foundation

/// The event codec's date format, `2026-11-21T12:00:01.234Z`, written and read by hand: Foundation's
/// `Date.ISO8601FormatStyle` costs several microseconds a date, more than the rest of an event.
///
/// Dates are always UTC, from 1583 (the first whole year of the Gregorian calendar) to 9999.
/// Writing rounds to the nearest millisecond; reading takes exactly the two forms the codec
/// writes (`.SSS` and whole seconds). Earlier dates and every other spelling are Foundation's
/// to write and read: its calendar is Julian before October 1582, and the codec's output must
/// stay what Foundation's formatter made of those dates before.
enum ISO8601Milliseconds {
    /// Milliseconds since 1970 of 0000-01-01T00:00:00.000Z and of 10000-01-01T00:00:00.000Z: the
    /// span ISO 8601's four-digit years can write.
    static let earliest: Int64 = -62_167_219_200_000
    static let end: Int64 = 253_402_300_800_000
    /// Milliseconds since 1970 of 1583-01-01T00:00:00.000Z: from here on, Foundation's calendar
    /// and the arithmetic below agree.
    static let gregorian: Int64 = -12_212_553_600_000

    /// The date rounded to the nearest millisecond, in milliseconds since 1970; `nil` for a date
    /// that is not finite or not within years 0000 to 9999.
    static func milliseconds(of date: Date) -> Int64? {
        let scaled = (date.timeIntervalSince1970 * 1000).rounded()
        guard let milliseconds = Int64(exactly: scaled), milliseconds >= earliest, milliseconds < end else { return nil }
        return milliseconds
    }

    /// Appends the 24 bytes of `2026-11-21T12:00:01.234Z` for a moment of ``gregorian`` ..< ``end``.
    static func write(milliseconds: Int64, into bytes: inout [UInt8]) {
        let (dayNumber, millisecondOfDay) = floorDivision(milliseconds, 86_400_000)
        let (year, month, day) = civilDate(daysSince1970: dayNumber)
        let secondOfDay = millisecondOfDay / 1000
        appendDigits(year, count: 4, into: &bytes)
        bytes.append(UInt8(ascii: "-"))
        appendDigits(month, count: 2, into: &bytes)
        bytes.append(UInt8(ascii: "-"))
        appendDigits(day, count: 2, into: &bytes)
        bytes.append(UInt8(ascii: "T"))
        appendDigits(secondOfDay / 3600, count: 2, into: &bytes)
        bytes.append(UInt8(ascii: ":"))
        appendDigits(secondOfDay / 60 % 60, count: 2, into: &bytes)
        bytes.append(UInt8(ascii: ":"))
        appendDigits(secondOfDay % 60, count: 2, into: &bytes)
        bytes.append(UInt8(ascii: "."))
        appendDigits(millisecondOfDay % 1000, count: 3, into: &bytes)
        bytes.append(UInt8(ascii: "Z"))
    }

    /// The text's moment in milliseconds since 1970 when it is `YYYY-MM-DDTHH:MM:SS.SSSZ` or
    /// `YYYY-MM-DDTHH:MM:SSZ` naming a real day and time from 1583 on; `nil` for anything else.
    static func parse(_ text: UnsafeBufferPointer<UInt8>) -> Int64? {
        guard text.count == 20 || text.count == 24, text[4] == UInt8(ascii: "-"), text[7] == UInt8(ascii: "-"),
            text[10] == UInt8(ascii: "T"), text[13] == UInt8(ascii: ":"), text[16] == UInt8(ascii: ":"),
            text[text.count - 1] == UInt8(ascii: "Z"),
            let year = digits(text, 0, 4), let month = digits(text, 5, 2), let day = digits(text, 8, 2),
            let hour = digits(text, 11, 2), let minute = digits(text, 14, 2), let second = digits(text, 17, 2),
            year >= 1583, (1...12).contains(month), day >= 1, day <= daysIn(month: month, year: year),
            hour < 24, minute < 60, second < 60
        else { return nil }
        var millisecond: Int64 = 0
        if text.count == 24 {
            guard text[19] == UInt8(ascii: "."), let fraction = digits(text, 20, 3) else { return nil }
            millisecond = fraction
        }
        let days = daysSince1970(year: year, month: month, day: day)
        return ((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + millisecond
    }

    // MARK: - Calendar arithmetic (proleptic Gregorian, days since 1970-01-01)

    /// Year, month and day of a day number: the inverse of ``daysSince1970(year:month:day:)``,
    /// counting in 400-year eras of 146,097 days whose years start in March (so February's leap
    /// day is the era-year's last).
    static func civilDate(daysSince1970 days: Int64) -> (year: Int64, month: Int64, day: Int64) {
        let shifted = days + 719_468  // days since 0000-03-01
        let (era, dayOfEra) = floorDivision(shifted, 146_097)
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthFromMarch = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * monthFromMarch + 2) / 5 + 1
        let month = monthFromMarch < 10 ? monthFromMarch + 3 : monthFromMarch - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        return (year, month, day)
    }

    /// Days from 1970-01-01 to the given day.
    static func daysSince1970(year: Int64, month: Int64, day: Int64) -> Int64 {
        let marchYear = month <= 2 ? year - 1 : year
        let (era, yearOfEra) = floorDivision(marchYear, 400)
        let monthFromMarch = month > 2 ? month - 3 : month + 9
        let dayOfYear = (153 * monthFromMarch + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    static func daysIn(month: Int64, year: Int64) -> Int64 {
        switch month {
        case 2: return year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    private static func floorDivision(_ value: Int64, _ divisor: Int64) -> (Int64, Int64) {
        let (quotient, remainder) = value.quotientAndRemainder(dividingBy: divisor)
        return remainder < 0 ? (quotient - 1, remainder + divisor) : (quotient, remainder)
    }

    private static func appendDigits(_ value: Int64, count: Int, into bytes: inout [UInt8]) {
        var divisor: Int64 = 1
        for _ in 1..<count { divisor *= 10 }
        while divisor > 0 {
            bytes.append(UInt8(ascii: "0") + UInt8(value / divisor % 10))
            divisor /= 10
        }
    }

    private static func digits(_ text: UnsafeBufferPointer<UInt8>, _ start: Int, _ count: Int) -> Int64? {
        var value: Int64 = 0
        for index in start..<start + count {
            let digit = text[index] &- UInt8(ascii: "0")
            guard digit < 10 else { return nil }
            value = value * 10 + Int64(digit)
        }
        return value
    }
}
