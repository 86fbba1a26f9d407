import shapes


async def main(client: shapes.ShapesClient, blocking: shapes.ShapesBlockingClient) -> None:
    await client.classify("Square")  # E: arg-type: Argument 1 to "classify" of "ShapesClient" has incompatible type "Literal['Square']"
    await client.classify({"Circle": "big"})  # E: arg-type: Argument 1 to "classify" of "ShapesClient" has incompatible type "dict[str, str]"
    await client.configure(timeout=1.0, verbose=True)  # E: call-arg: Unexpected keyword argument "verbose" for "configure" of "ShapesClient"
    await client.total(["1"])  # E: list-item: List item 0 has incompatible type "str"; expected "int"
    blocking.walk(name="root")  # E: call-overload: No overload variant of "walk" of "ShapesBlockingClient" matches argument type "str"
    tree: shapes.Tree = {"name": "t", "children": [], "parent": {"name": 1, "children": []}}  # E: typeddict-item: TypedDict item "parent" has type "Tree | None"
    point: shapes.Point = (1, 2, 3)  # E: assignment: Incompatible types in assignment (expression has type "tuple[int, int, int]", variable has type "tuple[int, int]")
    print(tree, point)
