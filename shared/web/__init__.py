"""HTTP for every service: app factory, problem details, bearer-JWT identity."""
