"""What route handlers need, opened once in the lifespan and handed out per request."""

from typing import Annotated

from fastapi import Depends, Request

from services.retrieval.runtime import Retrieval


async def _retrieval(request: Request) -> Retrieval:
    return request.app.state.retrieval  # type: ignore[no-any-return]


RetrievalDep = Annotated[Retrieval, Depends(_retrieval)]
