import greeter


class Partial:
    async def say_hello(self, req: greeter.HelloRequest) -> greeter.HelloReply:
        return {"message": req["name"]}


greeter.GreeterService(Partial())  # E: arg-type: Argument 1 to "GreeterService" has incompatible type "Partial"; expected "GreeterImpl"
