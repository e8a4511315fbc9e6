#version 330 core
// Shaded mesh: per-vertex albedo, Lambert diffuse from up to two directional lights, ambient,
// optional Blinn-Phong specular. One file, compiled once per stage: core/render.py inserts
// "#define VERTEX_SHADER" or "#define FRAGMENT_SHADER" after the #version line.
// Vertices arrive in OpenCV camera space (metres; +x right, +y down, +z forward).

#if defined VERTEX_SHADER

uniform mat4 u_projection;  // core.camera.opengl_projection

in vec3 in_position;
in vec3 in_normal;
in vec3 in_color;

out vec3 v_position;
out vec3 v_normal;
out vec3 v_color;

void main() {
    v_position = in_position;
    v_normal = in_normal;
    v_color = in_color;
    gl_Position = u_projection * vec4(in_position, 1.0);
}

#elif defined FRAGMENT_SHADER

const int MAX_LIGHTS = 2;
uniform vec3 u_light_dirs[MAX_LIGHTS];    // unit vectors towards each light, camera space
uniform vec3 u_light_colors[MAX_LIGHTS];  // diffuse strength x colour; zero switches a light off
uniform vec3 u_ambient;
uniform float u_specular;                 // 0 = matte
uniform float u_shininess;
uniform float u_opacity;

in vec3 v_position;
in vec3 v_normal;
in vec3 v_color;

out vec4 out_color;  // premultiplied alpha; opacity 0 still writes depth (hidden-line removal)

void main() {
    vec3 to_eye = normalize(-v_position);
    float len = length(v_normal);
    vec3 n = len > 1e-12 ? v_normal / len : to_eye;
    // Two-sided: culling is off and the projection may flip winding, so face the viewer.
    if (dot(n, to_eye) < 0.0) n = -n;
    vec3 light = u_ambient;
    vec3 highlight = vec3(0.0);
    for (int i = 0; i < MAX_LIGHTS; ++i) {
        float lambert = max(dot(n, u_light_dirs[i]), 0.0);
        light += u_light_colors[i] * lambert;
        if (u_specular > 0.0 && lambert > 0.0) {
            vec3 half_dir = normalize(u_light_dirs[i] + to_eye);
            highlight += u_light_colors[i] * u_specular * pow(max(dot(n, half_dir), 0.0), u_shininess);
        }
    }
    vec3 rgb = clamp(v_color * light + highlight, 0.0, 1.0);
    out_color = vec4(rgb * u_opacity, u_opacity);
}

#endif
