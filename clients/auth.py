from django.utils.translation import gettext_lazy as _
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from fedplatform.prepared import Prepared

from .models import Client, ClientStatus, hash_token

# Every device request starts here: compiled once (fedplatform.prepared), about a tenth of the cost.
_client_by_token_hash = Prepared(
    lambda token_hash: Client.objects.select_related("run").filter(token_hash=token_hash), str
)


class ClientTokenAuthentication(authentication.TokenAuthentication):
    """``Authorization: Token <token>`` for devices; ``request.user`` becomes the Client.

    A kicked client's token is revoked: it grants nothing, and every request with it gets a 403
    saying why (a bare 401 would make the device retry registering).
    """

    keyword = "Token"

    def authenticate_credentials(self, key: str):
        client = _client_by_token_hash.first(hash_token(key))
        if client is None or client.status == ClientStatus.LEFT:
            raise exceptions.AuthenticationFailed(_("Invalid or revoked client token."))
        if client.status == ClientStatus.KICKED:
            raise exceptions.PermissionDenied(_("This client was removed by an operator."), code="kicked")
        return (client, client)


class ClientTokenScheme(OpenApiAuthenticationExtension):
    target_class = ClientTokenAuthentication
    name = "clientToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "Device token from registration, as `Token <token>`.",
        }


def is_client(user) -> bool:
    return isinstance(user, Client)
