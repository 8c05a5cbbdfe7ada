/// A `Duration` in the units other APIs take (milliseconds for AMQP TTLs and database
/// timestamps, seconds as a `Double`), for every module of the package.
extension Duration {
    /// The whole milliseconds of the duration (truncated).
    package var wholeMilliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }

    /// The duration in seconds.
    package var secondsValue: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}
