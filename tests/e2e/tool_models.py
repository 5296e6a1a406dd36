"""The function tools' argument models the tool tests share (tests/e2e/test_tools.py on chat,
tests/e2e/test_responses_tools.py on /v1/responses): a bounded string and enum, and two
bounded integers, so that any call the grammar lets through validates."""
from typing import Literal

import pydantic


class GetWeather(pydantic.BaseModel):
    city: str = pydantic.Field(max_length=20)
    unit: Literal["c", "f"]


class Add(pydantic.BaseModel):
    a: int = pydantic.Field(ge=0, le=999)
    b: int = pydantic.Field(ge=0, le=999)


MODELS = {"get_weather": GetWeather, "add": Add}
