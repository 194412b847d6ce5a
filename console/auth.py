"""Signing in to the console: the API's own token, kept in a cookie.

A person pastes a token (minted by `workbench token`, or the identity provider's when
`WORKBENCH_JWKS_URL` is set); it is verified by the API's `Authenticator`, exactly as a
bearer token is, and kept in an HttpOnly, SameSite=Strict cookie scoped to `/console`
that expires with the token. Every request verifies it again: an expired, forged or
revoked-by-rotation token signs the person out. Roles and tenant are the token's;
actions ask `Principal.actor_for`, the API's check, so a viewer's forged POST is a 403
whatever the page showed.

State-changing requests must come from the console's own pages: `Sec-Fetch-Site:
same-origin`, or (browsers that do not send it) an `Origin` naming this host. A request
with neither is refused too: browsers send one of them with every POST.
"""

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import jwt
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from api.auth import Principal
from api.errors import ApiError
from console.render import PREFIX, View, is_fragment, page, view

COOKIE = "workbench_console"
SAFE_METHODS = frozenset({"GET", "HEAD"})


@dataclass(frozen=True)
class Me:
    """The signed-in person as the pages need them."""

    principal: Principal
    expires_at: float

    @property
    def subject(self) -> str:
        return self.principal.subject

    @property
    def tenant(self) -> str:
        return self.principal.tenant_id

    def _may(self, role: str) -> bool:
        try:
            self.principal.actor_for(role)  # type: ignore[arg-type]
        except ApiError:
            return False
        return True

    @property
    def role(self) -> str:
        """The strongest of the person's roles, as the API acts with it."""
        if not self._may("viewer"):
            return "none"
        return self.principal.actor_for("viewer").role

    @property
    def can_act(self) -> bool:
        """Whether the pages show actions: the API's own check for the operator role,
        which every action makes again on the server."""
        return self._may("operator")

    @property
    def is_owner(self) -> bool:
        return self._may("owner")


class SignInRequired(Exception):
    def __init__(self, expired: bool) -> None:
        super().__init__("sign in")
        self.expired = expired


def _expiry(token: str) -> float | None:
    """The token's `exp`, read without checking the signature: only to tell an expired
    token from a bad one. The signature is checked by the authenticator."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    exp = claims.get("exp")
    return float(exp) if isinstance(exp, int | float) else None


async def verify(request: Request, token: str) -> Me:
    principal = await request.app.state.authenticator.authenticate(f"Bearer {token}")
    expires_at = _expiry(token)
    assert expires_at is not None  # the authenticator requires exp
    return Me(principal, expires_at)


async def signed_in(request: Request) -> Me:
    """The person the cookie names, or `SignInRequired`."""
    token = request.cookies.get(COOKIE)
    if not token:
        raise SignInRequired(expired=False)
    expires_at = _expiry(token)
    if expires_at is not None and expires_at <= time.time():
        raise SignInRequired(expired=True)
    try:
        me = await verify(request, token)
    except ApiError as error:
        raise SignInRequired(expired="expired" in error.message.lower()) from error
    request.state.me = me
    return me


def require_same_origin(request: Request) -> None:
    """Refuse a state-changing request that did not come from the console's own pages."""
    if request.method in SAFE_METHODS:
        return
    site = request.headers.get("sec-fetch-site")
    origin = request.headers.get("origin")
    if site is not None:
        allowed = site == "same-origin"
    elif origin is not None and origin != "null":
        allowed = urlsplit(origin).netloc == request.headers.get("host", "")
    else:
        allowed = False
    if not allowed:
        raise ApiError(
            403,
            "cross_origin_refused",
            "this request did not come from the console's own pages",
            {"sec_fetch_site": site, "origin": origin},
        )


def sign_in_redirect(request: Request, *, expired: bool) -> Response:
    """To the sign-in page, back here afterwards; an expired cookie is removed."""
    target = request.url.path
    if request.url.query:
        target += "?" + request.url.query
    location = f"{PREFIX}/sign-in?next={quote(target, safe='')}"
    if expired:
        location += "&expired=1"
    if is_fragment(request):
        # htmx follows HX-Redirect with a full navigation.
        response: Response = Response(status_code=401, headers={"HX-Redirect": location})
    else:
        response = RedirectResponse(location, status_code=303)
    response.delete_cookie(COOKIE, path=PREFIX)
    return response


def _safe_next(value: str | None) -> str:
    """Only a console path: never another site (an open redirect)."""
    if value and value.startswith(PREFIX + "/") and not value.startswith("//"):
        return value
    return f"{PREFIX}/tasks"


@view
async def sign_in_form(request: Request) -> Response:
    expired = request.query_params.get("expired") == "1"
    return page(
        request,
        "sign_in.html",
        {
            "next": _safe_next(request.query_params.get("next")),
            "expired": expired,
            "jwks": request.app.state.settings.jwks_url is not None,
        },
    )


@view
async def sign_in(request: Request) -> Response:
    require_same_origin(request)
    form = await request.form()
    token = str(form.get("token") or "").strip()
    target = _safe_next(str(form.get("next") or ""))
    try:
        me = await verify(request, token)
    except ApiError as error:
        context = {"next": target, "error": error, "jwks": False}
        return page(request, "sign_in.html", context, status_code=error.status_code)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE,
        token,
        max_age=max(1, int(me.expires_at - time.time())),
        path=PREFIX,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@view
async def sign_out(request: Request) -> Response:
    require_same_origin(request)
    response = RedirectResponse(f"{PREFIX}/sign-in?signed_out=1", status_code=303)
    response.delete_cookie(COOKIE, path=PREFIX, httponly=True, samesite="strict")
    return response


def signed_view(handler: Callable[[Request, Me], Awaitable[Response]]) -> View:
    """A console endpoint for a signed-in person: a state-changing request from
    elsewhere is refused first (403), then a missing or expired cookie goes to the
    sign-in page, then `handler(request, me)` runs, its errors rendered by `view`."""

    async def endpoint(request: Request) -> Response:
        require_same_origin(request)
        try:
            me = await signed_in(request)
        except SignInRequired as refused:
            return sign_in_redirect(request, expired=refused.expired)
        return await handler(request, me)

    endpoint.__name__ = handler.__name__
    return view(endpoint)
