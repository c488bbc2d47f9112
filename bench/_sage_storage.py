"""placeholder"""


async def rows():
    return []
