internal import CRabbitMQ

/// The reply to a synchronous AMQP method, copied out of librabbitmq's pool so it can cross to
/// the waiting task.
enum MethodReply: Sendable {
    case channelOpenOk
    case channelCloseOk
    case queueDeclareOk(AMQPChannel.QueueDeclareResult)
    case queueDeleteOk(messageCount: UInt32)
    case getOk(DeliveryContent)
    case getEmpty
    case purgeOk(messageCount: UInt32)
    /// A reply whose arguments nobody needs (e.g. `queue.bind-ok`).
    case empty(id: UInt32)

    init(copying method: amqp_method_t) {
        switch method.id {
        case AMQP_CHANNEL_OPEN_OK_METHOD:
            self = .channelOpenOk
        case AMQP_CHANNEL_CLOSE_OK_METHOD:
            self = .channelCloseOk
        case AMQP_BASIC_GET_EMPTY_METHOD:
            self = .getEmpty
        case AMQP_QUEUE_DECLARE_OK_METHOD:
            let ok = method.decoded.assumingMemoryBound(to: amqp_queue_declare_ok_t.self).pointee
            self = .queueDeclareOk(
                .init(name: String(copying: ok.queue), messageCount: ok.message_count, consumerCount: ok.consumer_count))
        case AMQP_QUEUE_PURGE_OK_METHOD:
            let ok = method.decoded.assumingMemoryBound(to: amqp_queue_purge_ok_t.self).pointee
            self = .purgeOk(messageCount: ok.message_count)
        case AMQP_QUEUE_DELETE_OK_METHOD:
            let ok = method.decoded.assumingMemoryBound(to: amqp_queue_delete_ok_t.self).pointee
            self = .queueDeleteOk(messageCount: ok.message_count)
        default:
            self = .empty(id: method.id)
        }
    }
}

/// A task waiting for the reply to a synchronous method on a channel.
///
/// AMQP allows one synchronous method in flight per channel, and RabbitMQ relies on it: it
/// answers `basic.consume` and `basic.cancel` from the queue's process, so a method sent after
/// them can be answered first. A channel therefore queues its synchronous methods and transmits
/// the next only when the reply to the previous one has arrived.
struct PendingReply {
    /// The method ids that may answer (e.g. `basic.get-ok` or `basic.get-empty`).
    let expected: [amqp_method_number_t]
    let continuation: ReplyWaiter
    /// The request, for error messages (`queue.declare`).
    let name: String
    /// For `basic.get`: the message comes auto-acknowledged, so its tag is never outstanding.
    var autoAck = false
    /// Sends the method on the connection given; `nil` once sent.
    var transmit: ((amqp_connection_state_t) -> Int32)?
    /// Runs once the method is written: for mode changes that apply to what is sent after it.
    var onTransmit: (() -> Void)?
    /// When the reply is overdue; set when the method is sent.
    var deadline: ContinuousClock.Instant?
    /// What the reply confirms, for recovery to do again.
    var recording: TopologyChange?
}

/// AMQP method ids as librabbitmq defines them (class id << 16 | method id).
extension amqp_method_number_t {
    var classID: UInt16 { UInt16(truncatingIfNeeded: self >> 16) }
    var methodID: UInt16 { UInt16(truncatingIfNeeded: self) }
    var methodName: String { AMQPMethodName.name(classID: classID, methodID: methodID) }
}
