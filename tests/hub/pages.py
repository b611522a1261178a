"""Helpers of the page tests: read a page as a browser would (parsed HTML) and submit its forms with the session's
CSRF token in the form, as the pages themselves send it."""

from __future__ import annotations

from bs4 import BeautifulSoup


def soup(answer) -> BeautifulSoup:
    return BeautifulSoup(answer.get_data(as_text=True), "html.parser")


def token(client) -> str:
    """The session's CSRF token, read from a page's form."""
    found = soup(client.get("/workers")).find("input", {"name": "csrf_token"})
    assert found is not None, "the page has no CSRF token"
    return found["value"]


def post_form(client, url: str, data: dict | None = None, **kwargs):
    """POST ``data`` as a form with the CSRF token field, without the header the API clients send."""
    return client.client.post(url, data={"csrf_token": token(client.client), **(data or {})}, **kwargs)


def flashes(page: BeautifulSoup) -> list[str]:
    return [p.get_text(" ", strip=True) for p in page.select(".flash")]


def field_error(page: BeautifulSoup, name: str) -> str:
    """The problem shown beside the input named ``name`` ("" when none)."""
    found = page.find(id=f"{name}-error") or page.find(id=f"p-{name}-error")
    return found.get_text(" ", strip=True) if found else ""
