"""FastAPI dependencies: the app's services and the authenticated caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from api.domain.caller import Caller
from api.runtime import Services
from api.service.admin import AdminService
from api.service.bulk import BulkService
from api.service.insights import InsightService
from api.service.pipelines import PipelineService
from api.service.tasks import TaskService


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


# The credentials, as OpenAPI security schemes: each operation that needs one lists both, either will do.
# They only read the headers (auto_error=False); api/auth.py's Authenticator decides, with its own 401.
API_KEY = APIKeyHeader(
    name="X-API-Key",
    scheme_name="APIKeyHeader",
    description="A tenant's API key (`API_KEY`, `API_KEYS`, `API_KEYS_FILE`), or the admin key "
    "(`ADMIN_API_KEY`).",
    auto_error=False,
)
BEARER = HTTPBearer(
    scheme_name="HTTPBearer",
    bearerFormat="JWT",
    description="An HS256 JWT signed with `JWT_SECRET` (`sub` and `exp` required; the tenant in its "
    "`JWT_TENANT_CLAIM` claim). On `/metrics`, an API key may stand in its place.",
    auto_error=False,
)
ApiKeyDep = Annotated[str | None, Security(API_KEY)]
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)]


def authenticate(services: ServicesDep, api_key: ApiKeyDep, bearer: BearerDep) -> Caller:
    return services.auth.authenticate(api_key, f"Bearer {bearer.credentials}" if bearer else None)


CallerDep = Annotated[Caller, Depends(authenticate)]


def get_task_service(services: ServicesDep) -> TaskService:
    return services.tasks()


def get_insight_service(services: ServicesDep) -> InsightService:
    return services.insights()


def get_bulk_service(services: ServicesDep) -> BulkService:
    return services.bulk()


def get_admin_service(services: ServicesDep) -> AdminService:
    return services.admin()


TaskServiceDep = Annotated[TaskService, Depends(get_task_service)]
InsightServiceDep = Annotated[InsightService, Depends(get_insight_service)]
AdminServiceDep = Annotated[AdminService, Depends(get_admin_service)]
BulkServiceDep = Annotated[BulkService, Depends(get_bulk_service)]


def get_pipeline_service(services: ServicesDep) -> PipelineService:
    return services.pipelines()


PipelineServiceDep = Annotated[PipelineService, Depends(get_pipeline_service)]
