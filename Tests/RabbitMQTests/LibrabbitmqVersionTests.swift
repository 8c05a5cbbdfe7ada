internal import CRabbitMQ
import Foundation
import Testing

/// The client is built against the headers of one librabbitmq and loads a library at run time:
/// they must be the same release (CI builds against 0.11's flat headers and 0.15's
/// `<rabbitmq-c/amqp.h>`; `scripts/with-librabbitmq-0.15` sets `EXPECTED_LIBRABBITMQ`).
@Suite("librabbitmq")
struct LibrabbitmqVersionTests {
    @Test func theLoadedLibraryIsTheReleaseTheHeadersDescribe() {
        let loaded = amqp_version_number()
        let headers = "\(AMQP_VERSION_MAJOR).\(AMQP_VERSION_MINOR).\(AMQP_VERSION_PATCH)"
        #expect(loaded >> 24 == UInt32(AMQP_VERSION_MAJOR), "headers \(headers)")
        #expect((loaded >> 16) & 0xFF == UInt32(AMQP_VERSION_MINOR), "headers \(headers)")
        if let expected = ProcessInfo.processInfo.environment["EXPECTED_LIBRABBITMQ"] {
            #expect(headers == expected)
            #expect(String(cString: amqp_version()).hasPrefix(expected))
        }
    }
}
