import Foundation
import Hummingbird
import Metrics
import OrderEvents
import ServiceSupport

/// The body of `POST /orders`: `{"customerId": "c-1", "items": [{"sku": "SKU-1", "quantity": 2}]}`
/// (an item may carry a `price`).
struct PlaceOrderRequest: Decodable {
    struct Item: Decodable {
        var sku: String
        var quantity: Int
        var price: Double?
    }
    var customerId: String
    var items: [Item]

    /// The most items one order may have.
    static let maximumItems = 100

    /// Decodes and checks a request body; the error says what is wrong, for the 400 answer.
    static func parse(_ body: Data) -> Result<PlaceOrderRequest, ValidationFailure> {
        let request: PlaceOrderRequest
        do {
            request = try JSONDecoder().decode(PlaceOrderRequest.self, from: body)
        } catch let DecodingError.keyNotFound(key, _) {
            return .failure(ValidationFailure("missing field '\(key.stringValue)'"))
        } catch let DecodingError.typeMismatch(type, context) {
            return .failure(ValidationFailure("'\(path(context))' must be \(describe(type))"))
        } catch let DecodingError.valueNotFound(type, context) {
            return .failure(ValidationFailure("'\(path(context))' must be \(describe(type)), not null"))
        } catch {
            return .failure(ValidationFailure("the body is not valid JSON"))
        }
        if request.customerId.trimmingCharacters(in: .whitespaces).isEmpty {
            return .failure(ValidationFailure("customerId must not be empty"))
        }
        if request.items.isEmpty { return .failure(ValidationFailure("an order needs at least one item")) }
        if request.items.count > maximumItems {
            return .failure(ValidationFailure("an order has at most \(maximumItems) items"))
        }
        for item in request.items {
            if item.sku.trimmingCharacters(in: .whitespaces).isEmpty {
                return .failure(ValidationFailure("every item needs a sku"))
            }
            if item.quantity <= 0 { return .failure(ValidationFailure("quantity of \(item.sku) must be above 0")) }
            if let price = item.price, !(price >= 0) || !price.isFinite {
                return .failure(ValidationFailure("price of \(item.sku) must be 0 or more"))
            }
        }
        return .success(request)
    }

    /// `items[0].quantity` for a decoding error's place.
    private static func path(_ context: DecodingError.Context) -> String {
        var text = ""
        for key in context.codingPath {
            if let index = key.intValue { text += "[\(index)]" } else { text += (text.isEmpty ? "" : ".") + key.stringValue }
        }
        return text
    }

    private static func describe(_ type: Any.Type) -> String {
        switch type {
        case is Int.Type: "an integer"
        case is Double.Type: "a number"
        case is String.Type: "a string"
        default: "of type \(type)"
        }
    }

    /// The order's lines.
    var orderItems: [OrderItem] {
        items.map { OrderItem(sku: $0.sku, quantity: $0.quantity, price: $0.price ?? 0) }
    }
}

/// Why a request was refused (a 400).
struct ValidationFailure: Error {
    var message: String
    init(_ message: String) { self.message = message }
}

/// The answer to a placed or cancelled order.
struct OrderAccepted: Encodable {
    var orderId: String
    var status: OrderStatus
}

/// The routes of `order-service`.
enum OrderRoutes {
    /// Largest request body read.
    static let maximumBody = 64 * 1024

    static func add(to router: Router<BasicRequestContext>, orders: any OrderStore) {
        let placed = Counter(label: "orders_placed_total")
        let refused = Counter(label: "orders_refused_total")

        router.post("orders") { request, _ -> Response in
            let body: ByteBuffer
            do {
                body = try await request.body.collect(upTo: maximumBody)
            } catch {
                return jsonResponse(.contentTooLarge, ErrorBody("the body is larger than \(maximumBody) bytes"))
            }
            switch PlaceOrderRequest.parse(Data(buffer: body)) {
            case .failure(let failure):
                refused.increment()
                return jsonResponse(.badRequest, ErrorBody(failure.message))
            case .success(let order):
                let orderID = try await orders.place(customerID: order.customerId, items: order.orderItems)
                placed.increment()
                return jsonResponse(.accepted, OrderAccepted(orderId: orderID, status: .pending))
            }
        }

        router.post("orders/:id/cancel") { _, context -> Response in
            let orderID = try context.parameters.require("id")
            switch try await orders.cancel(orderID, reason: "cancelled by the customer") {
            case .cancelled:
                return jsonResponse(.accepted, OrderAccepted(orderId: orderID, status: .cancelled))
            case .notFound:
                return jsonResponse(.notFound, ErrorBody("no order \(orderID)"))
            case .conflict(let status):
                return jsonResponse(.conflict, ErrorBody("order \(orderID) is \(status.rawValue) and cannot be cancelled"))
            }
        }

        router.get("orders/:id") { _, context -> Response in
            let orderID = try context.parameters.require("id")
            guard let order = try await orders.view(orderID) else {
                return jsonResponse(.notFound, ErrorBody("no order \(orderID)"))
            }
            return jsonResponse(.ok, order)
        }
    }
}
