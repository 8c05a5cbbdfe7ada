import DequeModule

/// The delivery tags of a channel that still await an acknowledgement, as a bitmap over a window
/// that slides up.
///
/// The broker numbers a channel's deliveries 1, 2, 3, ... and applications acknowledge them
/// roughly in that order, so the outstanding tags sit in a narrow band: one bit per tag from
/// the oldest outstanding one up, in 64-bit words. Adding, finding and removing a tag costs a
/// few instructions and no hashing or allocation (this runs twice per message); the window
/// drops its lowest words as they empty.
struct OutstandingTags {
    /// The tag of bit 0 of the first word; a multiple of 64.
    private var base: UInt64 = 0
    private var words: Deque<UInt64> = []
    /// How many tags are outstanding.
    private(set) var count = 0

    var isEmpty: Bool { count == 0 }

    /// Records a delivered tag.
    mutating func insert(_ tag: UInt64) {
        if words.isEmpty { base = tag & ~63 }
        if tag < base {
            // Older than the window (not expected: tags grow): widen it downwards.
            let missing = Int((base - tag + 63) / 64)
            for _ in 0..<missing { words.prepend(0) }
            base -= UInt64(missing) * 64
        }
        let index = Int((tag - base) / 64)
        while words.count <= index { words.append(0) }
        let bit: UInt64 = 1 << (tag % 64)
        if words[index] & bit == 0 {
            words[index] |= bit
            count += 1
        }
    }

    func contains(_ tag: UInt64) -> Bool {
        guard tag >= base else { return false }
        let index = Int((tag - base) / 64)
        return index < words.count && words[index] & (1 << (tag % 64)) != 0
    }

    /// Removes `tag`; false when it was not outstanding.
    mutating func remove(_ tag: UInt64) -> Bool {
        guard contains(tag) else { return false }
        words[Int((tag - base) / 64)] &= ~(1 << (tag % 64))
        count -= 1
        dropEmptyLowWords()
        return true
    }

    /// Removes every tag up to and including `tag`.
    mutating func removeAll(upTo tag: UInt64) {
        while let first = words.first, tag >= base {
            if tag - base >= 63 {
                // The whole word is covered.
                count -= first.nonzeroBitCount
                words.removeFirst()
                base += 64
            } else {
                let covered: UInt64 = (2 << (tag - base)) &- 1
                count -= (first & covered).nonzeroBitCount
                words[words.startIndex] = first & ~covered
                break
            }
        }
        dropEmptyLowWords()
    }

    mutating func removeAll() {
        words.removeAll(keepingCapacity: true)
        count = 0
    }

    private mutating func dropEmptyLowWords() {
        if count == 0 {
            words.removeAll(keepingCapacity: true)
            return
        }
        while words.first == 0 {
            words.removeFirst()
            base += 64
        }
    }
}
