"""Who made a request, as the shared plumbing needs to know it."""


class Device:
    """A device that authenticated with its token: ``request.user`` is then one of these (the
    clients app's ``Client`` rows are). The permissions and throttles tell devices from people by
    ``isinstance(user, Device)``, so the plumbing never imports the app that defines them."""
